"""The command line as an operator uses it, called in-process: exit status and output of a
management command, and the one time form its JSON writes."""

from __future__ import annotations

import io
import json
import re

from django.core.management import call_command
from django.core.management.base import CommandError

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TIME_LIKE = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


def run(*args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command called in-process."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code), out.getvalue(), err.getvalue()
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def run_json(*args):
    status, out, _ = run(*args, "--json")
    assert status == 0, out
    assert out.count("\n") <= 1
    return json.loads(out)
