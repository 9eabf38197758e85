"""A serving process's heap, frozen once it is loaded (``gc.freeze``, as Instagram's Django does).

What a process loads before it serves (modules, settings, URL patterns, view modules) lives as
long as the process. CPython's oldest-generation collections walk every tracked object, so on a
page view now and then they walked all of that again: up to ~300 ms once in ~40 requests on a
loaded two-core machine, for a contact list whose own work is ~20 ms. Frozen objects are left out
of those walks; everything allocated afterwards is collected as before."""

from __future__ import annotations

import contextlib
import gc


def freeze_loaded_heap() -> None:
    """Load the URL patterns (and with them every view module), collect what is garbage now,
    and freeze the rest. Called by the WSGI entry point once the application is built."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module now, not on a first request
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def heap_frozen():
    """For a benchmark that times pages in its own process after loading data: its heap frozen
    as `freeze_loaded_heap` freezes a server's when it starts, and released afterwards."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
