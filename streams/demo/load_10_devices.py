"""Demo: a phone (calls, texts, locations, battery) and a laptop (meetings), as device events."""

from __future__ import annotations

from streams.models import Device
from streams.places import device_places_public_set
from streams.services import device_create

from . import HERE, import_file

DEVICES = (("Pixel", "phone", "phone_events.jsonl"), ("ThinkPad", "laptop", "laptop_events.jsonl"))


def load(workspace, note) -> dict:
    counts = {}
    for name, kind, filename in DEVICES:
        device = Device.objects.filter(workspace=workspace, name=name).first()
        if device is None:
            device, _token = device_create(workspace=workspace, name=name, kind=kind)
            if kind == "phone":  # the phone's public fixes show, coarsened, on the demo lifestream
                device_places_public_set(device=device, public=True)
        counts[name] = import_file(workspace=workspace, connector="device", name=f"{name} events (demo)",
                                   path=HERE / filename, device=device)
        note(f"imported {filename}: {counts[name]}")
    return counts
