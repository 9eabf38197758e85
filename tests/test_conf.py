"""streams.conf: every MESH_* setting the core reads, with defaults that agree with the site's."""

from __future__ import annotations

import pytest

from mesh_site import settings as site_settings
from streams.conf import DEFAULTS, conf

# Derived from other settings or the environment, not a fixed default.
DERIVED = {"ENCRYPTION_KEYS"}


@pytest.mark.parametrize("name", sorted(set(DEFAULTS) - DERIVED))
def test_each_default_agrees_with_the_site_settings(name):
    assert getattr(site_settings, f"MESH_{name}") == DEFAULTS[name]


def test_every_mesh_setting_of_the_site_has_a_default():
    site = {name.removeprefix("MESH_") for name in dir(site_settings) if name.startswith("MESH_")}
    assert site <= set(DEFAULTS)


def test_a_setting_changed_at_run_time_is_read_and_a_missing_one_takes_its_default(settings):
    settings.MESH_PAGE_SIZE = 7
    assert conf.PAGE_SIZE == 7
    del settings.MESH_PAGE_SIZE
    assert conf.PAGE_SIZE == DEFAULTS["PAGE_SIZE"]


def test_an_unknown_name_is_an_error_naming_the_list():
    with pytest.raises(AttributeError, match="streams.conf.DEFAULTS"):
        assert conf.NO_SUCH_SETTING is None
