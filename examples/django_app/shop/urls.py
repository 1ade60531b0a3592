from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("signup", views.signup),
    path("result/<str:result_id>", views.result),
]
