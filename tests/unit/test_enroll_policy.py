"""The enrollment policy's decision table and its per-site settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.errors import ConfigError
from roost.inventory.lifecycle import State
from roost.pki.policy import anonymous_may_enroll
from roost.settings import load_settings


@pytest.mark.parametrize(
    ("auto", "state", "recommission", "may"),
    [
        ("new", None, False, True),
        ("new", State.discovered, False, True),
        ("new", State.broken, False, True),
        ("new", State.ready, False, False),
        ("new", State.deploying, False, False),
        ("new", State.deployed, False, False),
        ("new", State.deployed, True, True),
        ("new", State.pending, False, False),
        ("new", State.retired, True, False),
        ("off", None, False, False),
        ("off", State.discovered, False, False),
        ("off", State.deployed, True, True),
        ("any", State.deployed, False, True),
        ("any", State.deploying, False, False),
    ],
)
def test_who_may_enroll_from_an_anonymous_render(
    auto: str, state: State | None, recommission: bool, may: bool
) -> None:
    assert anonymous_may_enroll(auto, state, recommission) is may


def test_sites_override_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "roost.toml"
    config.write_text('[enroll]\napprove = true\n[enroll.sites.east]\nauto = "off"\n')
    enroll = load_settings(config).enroll
    assert enroll.auto == "new" and enroll.boot_token_ttl == 900
    east, west = enroll.for_site("east"), enroll.for_site("west")
    assert (east.auto, east.approve, east.boot_token_ttl) == ("off", True, 900)
    assert (west.auto, west.approve) == ("new", True)
    config.write_text('[enroll.sites.east]\nauto = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"enroll\.sites\.east\.auto"):
        load_settings(config)
