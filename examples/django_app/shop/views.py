"""``POST /signup`` (form field ``email``): the signup and its welcome task are saved in one
transaction: an empty email rolls back both."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Signup
from .tasks import send_welcome


class EmptyEmailError(ValueError):
    pass


@csrf_exempt
@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    email = request.POST.get("email", "")
    try:
        with transaction.atomic():
            row = Signup.objects.create(email=email)
            result = send_welcome.enqueue(row.pk)  # a job in this transaction
            if not email:
                raise EmptyEmailError("empty email")  # rolls back the signup AND the job
    except EmptyEmailError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"signup": row.pk, "task": result.id}, status=201)


def result(request: HttpRequest, result_id: str) -> HttpResponse:
    """The task's status and, once it succeeded, what it returned."""
    found = send_welcome.get_result(result_id)
    body = {
        "status": str(found.status),
        "value": found.return_value if found.status == "SUCCESSFUL" else None,
    }
    return JsonResponse(body)
