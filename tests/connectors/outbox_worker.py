"""`manage.py outbox_worker` in a separate OS process, with the test-only message kind.

Usage: DATABASE_URL=... python tests/connectors/outbox_worker.py [outbox_worker options]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from tests.connectors.form_handler import register  # noqa: E402

if __name__ == "__main__":
    register()
    call_command("outbox_worker", *sys.argv[1:])
