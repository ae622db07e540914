"""Refresh the Vietnamese catalogue: extract the marked strings, merge them into o2o/locale/vi, compile the .mo.

    .venv/bin/python manage.py update_catalogue            # after marking new strings; then translate the .po
    .venv/bin/python manage.py update_catalogue --compile  # after translating: compile only

Needs GNU gettext (xgettext, msgmerge, msgfmt). The compiled .mo is committed, so running the service does not;
tests/admin/test_i18n.py fails while the .mo is older than the .po or a string is left untranslated or fuzzy."""

import contextlib
import shutil
import subprocess

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

LANGUAGES = ["vi"]  # English is the source language: its strings are the msgids
# Not application code: nothing user-visible to extract, and compilemessages must not walk into .venv (it would
# recompile the installed packages' own catalogues).
IGNORE = [".*", "bench", "bench/*", "tests", "tests/*", "fixtures", "fixtures/*", "node_modules"]


class Command(BaseCommand):
    help = "Extract translatable strings into o2o/locale/<lang>/LC_MESSAGES/django.po and compile them."

    def add_arguments(self, parser):
        parser.add_argument("--compile", action="store_true", help="Only compile the .po files (no extraction).")

    def handle(self, *args, compile: bool, **options):
        missing = [tool for tool in ("xgettext", "msgmerge", "msgfmt") if shutil.which(tool) is None]
        if missing:
            raise CommandError(f"GNU gettext is needed ({', '.join(missing)} not found): apt-get install gettext")
        locale_dir = settings.LOCALE_PATHS[0]
        with contextlib.chdir(settings.BASE_DIR):
            if not compile:
                call_command(
                    "makemessages",
                    locale=LANGUAGES,
                    ignore_patterns=IGNORE,
                    add_location="file",  # file names only: line numbers would churn the .po on every edit
                    no_obsolete=True,
                    verbosity=options["verbosity"],
                )
            call_command("compilemessages", locale=LANGUAGES, ignore_patterns=IGNORE, verbosity=options["verbosity"])
        for language in LANGUAGES:
            po = locale_dir / language / "LC_MESSAGES" / "django.po"
            stats = subprocess.run(
                ["msgfmt", "--statistics", "-o", "/dev/null", str(po)], capture_output=True, text=True, check=True
            )
            self.stdout.write(f"{po.relative_to(settings.BASE_DIR)}: {stats.stderr.strip()}")
