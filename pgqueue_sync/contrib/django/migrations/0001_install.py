"""Install the queue's schema (``manage.py migrate``), or upgrade it; unapplied
(``manage.py migrate pgqueue_sync zero``), drop it with its jobs and log."""

from __future__ import annotations

from django.db import migrations

from pgqueue_sync.contrib.django.schema import install_or_upgrade, uninstall

# The version of the queue's schema that this migration brings. A release of pgqueue-sync
# whose schema changes adds a migration that runs install_or_upgrade again (its reverse a
# no-op: an upgrade is not undone) with the new version here: a test holds the newest
# migration's SCHEMA_VERSION to the library's.
SCHEMA_VERSION = 4


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.RunPython(install_or_upgrade, uninstall)]
