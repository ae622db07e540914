"""`manage.py test` runs pytest, so the README's one test command is `python3 manage.py test`."""

import sys


class PytestRunner:
    def __init__(self, verbosity: int = 1, failfast: bool = False, keepdb: bool = False, **kwargs) -> None:
        self.verbosity = verbosity
        self.failfast = failfast
        self.keepdb = keepdb

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--keepdb", action="store_true", help="Keep the test database between runs.")
        parser.add_argument("-k", dest="keyword", help="Only tests matching this pytest expression.")
        parser.add_argument("-x", dest="failfast", action="store_true")

    def run_tests(self, test_labels: list[str], **kwargs) -> int:
        import pytest

        argv: list[str] = []
        if self.verbosity == 0:
            argv.append("--quiet")
        elif self.verbosity > 1:
            argv.append("-v")
        if self.failfast:
            argv.append("--exitfirst")
        if self.keepdb:
            argv.append("--reuse-db")
        argv.extend(test_labels)
        code = pytest.main(argv)
        sys.exit(int(code))
