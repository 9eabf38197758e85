"""streams.queue: code below streams.tasks queues a task by its name."""

from __future__ import annotations

import pytest
from celery import current_app
from celery.exceptions import NotRegistered

from streams import tasks
from streams.queue import task_send


def test_a_task_queued_by_name_runs_that_task_of_streams_tasks(monkeypatch):
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    fanned_out = []
    monkeypatch.setattr(tasks, "activities_fan_out", lambda *, activity_ids: fanned_out.append(activity_ids) or 0)
    task_send("merge_activities", [3, 5])
    assert fanned_out == [[3, 5]]


def test_an_unknown_task_name_is_refused_not_dropped():
    with pytest.raises(NotRegistered):
        task_send("no_such_task")
