"""The bundled SMS demo data imports through the real sms_backup connector and joins the demo's
people by phone number."""

from __future__ import annotations


def test_demo_sms_backup_is_what_the_generator_makes():
    from streams.demo.load_30_sms import FILE, generate

    assert FILE.read_text(encoding="utf-8") == generate()


def test_demo_texts_land_on_the_demo_people_and_never_on_the_owner(workspace):
    from streams.demo.load_30_sms import OWN, load
    from streams.identity import identity_mark_self
    from streams.models import Activity, Contact, Identity

    identity_mark_self(workspace=workspace, kind="phone", value=OWN)
    counts = load(workspace, lambda message: None)
    assert counts["failed"] == 0 and counts["new"] == counts["fetched"] > 40
    assert load(workspace, lambda message: None)["new"] == 0  # idempotent
    phones = set(Identity.objects.filter(workspace=workspace, kind="phone", is_self=False).values_list("value", flat=True))
    assert phones <= {f"+1415555010{i}" for i in range(8)}
    assert not Contact.objects.filter(workspace=workspace, is_self=False, identities__value=OWN).exists()
    group = Activity.objects.filter(workspace=workspace, extra__group=True)
    assert group.count() == 3
    assert all(a.participants.count() == 3 for a in group)
    assert Activity.objects.filter(workspace=workspace, text__contains="🙈").exists()
