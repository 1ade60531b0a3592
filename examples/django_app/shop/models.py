"""The example's one model: a signup, whose welcome email is a task."""

from __future__ import annotations

from django.db import models


class Signup(models.Model):
    email: models.CharField[str, str] = models.CharField(max_length=200)
    welcomed: models.BooleanField[bool, bool] = models.BooleanField(default=False)
