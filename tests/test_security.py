"""Secrets at rest, tokens, and production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.crypto import SecretsError, secrets_decrypt, secrets_rotate, token_hash
from streams.models import Device, Source
from streams.services import (
    device_by_token,
    device_create,
    device_revoke,
    device_rotate_token,
    source_connector,
    source_create,
)

ROOT = Path(__file__).resolve().parent.parent


def test_source_secrets_are_encrypted_at_rest_and_decrypt_for_the_connector(workspace, tmp_path):
    source = source_create(workspace=workspace, connector="device", name="s",
                           config={"path": str(tmp_path / "x.jsonl"), "device": 1},
                           secrets={"password": "hunter2-very-secret"})
    stored = Source.objects.get(pk=source.pk).secrets_encrypted
    assert "hunter2" not in stored and stored
    assert source_connector(source=source).secrets == {"password": "hunter2-very-secret"}


def test_secrets_saved_with_another_key_give_a_clear_error_and_keys_rotate(workspace, tmp_path, settings):
    settings.MESH_ENCRYPTION_KEYS = ["old key"]
    source = source_create(workspace=workspace, connector="device", name="s",
                           config={"path": str(tmp_path / "x.jsonl")}, secrets={"password": "p"})
    settings.MESH_ENCRYPTION_KEYS = ["new key"]
    with pytest.raises(SecretsError, match="MESH_ENCRYPTION_KEYS"):
        secrets_decrypt(source.secrets_encrypted)
    # Rotation: the new key first, the old one still listed: old secrets decrypt, and
    # re-encrypting moves them to the new key.
    settings.MESH_ENCRYPTION_KEYS = ["new key", "old key"]
    assert secrets_decrypt(source.secrets_encrypted) == {"password": "p"}
    rotated = secrets_rotate(source.secrets_encrypted)
    settings.MESH_ENCRYPTION_KEYS = ["new key"]
    assert secrets_decrypt(rotated) == {"password": "p"}


def test_device_tokens_are_random_hashed_revocable_and_rotatable(workspace):
    device, token = device_create(workspace=workspace, name="Phone")
    other, other_token = device_create(workspace=workspace, name="Laptop")
    assert token != other_token and len(token) >= 43  # >= 256 bits of entropy after the prefix
    stored = Device.objects.get(pk=device.pk)
    assert stored.token_hash == token_hash(token) and token not in stored.token_hash
    assert device_by_token(token) == device
    device_revoke(device=device)
    assert device_by_token(token).is_revoked
    new = device_rotate_token(device=device)
    assert device_by_token(token) is None and device_by_token(new) == device
    assert not device_by_token(new).is_revoked


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG",)}
    env.update(DEBUG="0", SECRET_KEY="x" * 20 + "production-secret-key-with-enough-entropy-0123456789",
               MESH_ENCRYPTION_KEYS="prod-key", ALLOWED_HOSTS="mesh.example.com")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "MESH_ENCRYPTION_KEYS")}
    env.update(DEBUG="0")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr
