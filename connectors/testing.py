"""The connector conformance kit: the behaviour every connector must show, as a reusable pytest
base class. A connector's tests subclass it (Mesh's own and third-party ones alike):

    from connectors.testing import ConnectorConformance

    class TestMyConnector(ConnectorConformance):
        connector_key = "mine"

        def make_source(self, workspace, tmp_path):
            # a Source whose fetch yields at least 3 batches, with the items in EXPECTED and
            # at least one bad item (id in BAD)
            ...

        expected_drafts = {"external-id": {...ActivityDraft.as_dict()...}}
        bad_external_ids = {"external-id-of-a-bad-item"}

What it checks, against the real database and the real ingest path:
- every expected item normalizes to exactly the expected draft (the whole record);
- a re-sync from scratch imports nothing twice (second run: 0 new);
- a crash between batches, then a re-run, stores every item exactly once and resumes from the
  cursor saved with the last stored batch;
- a bad item becomes an ImportFailure with its reason and payload, and the rest goes on.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from connectors.base import RawItem, registry


class InjectedCrash(RuntimeError):
    pass


class ConnectorConformance:
    connector_key: ClassVar[str] = ""
    expected_drafts: ClassVar[dict[str, dict]] = {}
    bad_external_ids: ClassVar[set[str]] = set()
    # How many batches the source's first fetch yields at least (so a crash can fall between).
    min_batches: ClassVar[int] = 3

    # -- to implement -----------------------------------------------------------------------
    def make_source(self, workspace, tmp_path):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- fixtures ---------------------------------------------------------------------------
    @pytest.fixture
    def conformance_workspace(self, db):
        from streams.services import workspace_get_or_create

        return workspace_get_or_create(slug="conformance", name="Conformance")

    @pytest.fixture
    def conformance_source(self, conformance_workspace, tmp_path):
        return self.make_source(conformance_workspace, tmp_path)

    # -- helpers ----------------------------------------------------------------------------
    def all_items(self, source) -> list[RawItem]:
        from streams.services import source_connector

        connector = source_connector(source=source)
        items: list[RawItem] = []
        batches = 0
        for batch in connector.fetch(None):
            items.extend(batch.items)
            batches += 1
        assert batches >= self.min_batches, f"make_source must give >= {self.min_batches} batches, got {batches}"
        return items

    def good_ids(self, source) -> set[str]:
        return {i.external_id for i in self.all_items(source)} - set(self.bad_external_ids)

    # -- the contract -----------------------------------------------------------------------
    def test_connector_is_registered(self):
        cls = registry.get(self.connector_key)
        assert cls.key == self.connector_key

    def test_normalize_gives_the_whole_expected_draft(self, conformance_source):
        from streams.services import source_connector

        assert self.expected_drafts, "give at least one expected draft"
        connector = source_connector(source=conformance_source)
        by_id = {i.external_id: i for i in self.all_items(conformance_source)}
        for external_id, expected in self.expected_drafts.items():
            assert external_id in by_id, f"fetch did not yield {external_id}"
            draft = connector.normalize(by_id[external_id])
            draft.validate()
            assert draft.as_dict() == expected, f"draft of {external_id} differs"

    def test_resync_imports_nothing_twice(self, conformance_source):
        from streams import selectors
        from streams.services import source_sync

        workspace_id = conformance_source.workspace_id
        first = source_sync(source=conformance_source, fresh=True)
        good = len(self.good_ids(conformance_source))
        assert first.new == good
        activities = len(selectors.source_activity_external_ids(source=conformance_source))
        entries = selectors.timeline_entries_total(workspace_id=workspace_id)
        second = source_sync(source=conformance_source, fresh=True)
        assert (second.new, second.duplicate) == (0, good)
        assert second.fetched == first.fetched
        assert len(selectors.source_activity_external_ids(source=conformance_source)) == activities == good
        assert selectors.timeline_entries_total(workspace_id=workspace_id) == entries

    def test_cursor_survives_a_crash_between_batches(self, conformance_source, monkeypatch):
        from streams import selectors
        from streams.services import source_sync

        cls = registry.get(self.connector_key)
        original = cls.fetch

        def crashing_fetch(connector, cursor, *, since=None):
            for n, batch in enumerate(original(connector, cursor, since=since)):
                if n == 1:
                    raise InjectedCrash("crash after batch 1")
                yield batch

        monkeypatch.setattr(cls, "fetch", crashing_fetch)
        with pytest.raises(InjectedCrash):
            source_sync(source=conformance_source)
        crashed = selectors.source_latest_run(source=conformance_source)
        assert crashed.status == "failed" and crashed.batches == 1
        stored_after_crash = len(selectors.source_activity_external_ids(source=conformance_source))
        conformance_source.refresh_from_db()
        assert conformance_source.cursor, "the cursor of the stored batch was not saved"

        monkeypatch.setattr(cls, "fetch", original)
        rerun = source_sync(source=conformance_source)
        total = self.all_items(conformance_source)
        assert rerun.fetched == len(total) - crashed.fetched, "the re-run did not resume from the cursor"
        assert rerun.duplicate == 0
        good = self.good_ids(conformance_source)
        stored = selectors.source_activity_external_ids(source=conformance_source)
        assert len(stored) == len(set(stored)) == len(good)
        assert set(stored) == good
        assert stored_after_crash <= len(good)

    def test_bad_item_becomes_import_failure_and_the_batch_goes_on(self, conformance_source):
        from streams import selectors
        from streams.services import source_health, source_sync

        assert self.bad_external_ids, "give at least one bad item"
        run = source_sync(source=conformance_source, fresh=True)
        failures = {f.external_id: f for f in selectors.source_import_failures(source=conformance_source)}
        assert set(failures) == set(self.bad_external_ids)
        for failure in failures.values():
            assert failure.reason
            assert failure.payload is not None
        assert run.failed == len(self.bad_external_ids)
        assert len(selectors.source_activity_external_ids(source=conformance_source)) == len(
            self.good_ids(conformance_source))
        health = source_health(source=conformance_source)
        assert not health["healthy"] and health["open_failures"] == len(self.bad_external_ids)
        # Failing again does not add rows: one failure per item, attempts counted.
        source_sync(source=conformance_source, fresh=True)
        again = selectors.source_import_failures(source=conformance_source)
        assert again.count() == len(self.bad_external_ids)
        assert all(f.attempts == 2 for f in again)


def draft_dict(**fields: Any) -> dict:
    """An expected draft with the ActivityDraft defaults filled in."""
    base = {
        "direction": None, "subject": "", "text": "", "html": "", "url": "", "thread_key": "",
        "participants": [], "device": None, "visibility": "private", "attachments": [], "automated": False,
        "extra": {},
    }
    base.update(fields)
    base["participants"] = [{"display": "", "avatar": "", **p} for p in base["participants"]]
    return base
