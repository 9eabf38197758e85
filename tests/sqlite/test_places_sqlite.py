"""OwnTracks and places on SQLite, the embedded default: the app's HTTP mode stores and ingests,
the device page draws the visits and the track, and the demo phone's public places reach the
lifestream coarsened (nothing on the way is PostgreSQL-only: the JSON key test, the partial
index)."""

from __future__ import annotations

import base64
import json

from streams.models import Activity, Device


def test_owntracks_http_visits_and_track_on_the_device_page(demo_client, workspace, django_capture_on_commit_callbacks):
    from streams.services import device_create

    device, token = device_create(workspace=workspace, name="Smoke OwnTracks", kind="phone")
    auth = "Basic " + base64.b64encode(f"ana:{token}".encode()).decode()
    base = 1777636800
    messages = [{"_type": "location", "lat": 37.7765 + i * 0.0001, "lon": -122.3942, "acc": 10, "tst": base + i * 300,
                 "inregions": ["Café Réveille"]} for i in range(4)]
    messages.append({"_type": "location", "lat": 37.7965, "lon": -122.3942, "acc": 10, "tst": base + 1200})  # gone
    messages.append({"_type": "beacon", "uuid": "x", "tst": base})
    for message in [*messages, messages[0]]:  # the last one a resend
        with django_capture_on_commit_callbacks(execute=True):
            response = demo_client.post("/api/v1/owntracks", data=json.dumps(message), content_type="application/json",
                                        HTTP_AUTHORIZATION=auth)
        assert response.status_code == 200 and response.json() == []
    assert Activity.objects.filter(device=device).count() == 5
    page = demo_client.get(f"/devices/{device.pk}/").content.decode()
    assert page.count('class="visit"') == 1 and "Café Réveille" in page and "15 min" in page
    assert 'class="track-svg"' in page and "<desc" in page


def test_the_demo_phones_public_places_show_coarsened_on_the_lifestream(client, workspace):
    phone = Device.objects.get(workspace=workspace, name="Pixel")
    assert phone.places_public
    body = client.get(f"/@{workspace.slug}/").content.decode()
    assert "Café Réveille, near 37.78, -122.39" in body and "37.7765" not in body
    Device.objects.filter(pk=phone.pk).update(places_public=False)
    assert "Café Réveille" not in client.get(f"/@{workspace.slug}/").content.decode()
