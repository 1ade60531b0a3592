"""A small Django project on pgqueue-sync's Tasks backend (docs/django.md): a view saves a
signup and enqueues its welcome task in one transaction; ``manage.py pgq_worker`` runs it."""
