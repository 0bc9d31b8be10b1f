"""Range parsing (RFC 9110 §14) and profile selection by rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.boot.profiles import NodeInfo, Rule, choose
from roost.boot.static import UNSATISFIABLE, parse_range

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=1000-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=5-1", None),
        ("bytes=0-1,5-9", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=+1-2", None),
        ("bytes=--1", None),
        (None, None),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 1000) == expected


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**12))
def test_parse_range_stays_inside_the_file(header: str, size: int) -> None:
    got = parse_range(header, size)
    if got is not None and got != UNSATISFIABLE:
        first, last = got
        assert 0 <= first <= last < size


MAC = "52:54:00:00:00:01"
RULES = [
    Rule(id=1, profile="by-arch", priority=100, arch="x86_64-efi"),
    Rule(id=2, profile="by-mac", priority=10, mac=MAC),
    Rule(id=3, profile="by-tag", priority=50, tag="gpu"),
    Rule(id=4, profile="by-node-and-arch", priority=50, node="n7", arch="bios"),
    Rule(id=5, profile="older-same-priority", priority=50, tag="gpu"),
]


@pytest.mark.parametrize(
    ("node", "arch", "expected"),
    [
        (NodeInfo(mac=MAC), "x86_64-efi", "by-mac"),
        (NodeInfo(mac="52:54:00:00:00:02"), "x86_64-efi", "by-arch"),
        (NodeInfo(mac="52:54:00:00:00:02", tags=("gpu",)), "x86_64-efi", "by-tag"),
        (NodeInfo(mac="52:54:00:00:00:02", name="n7"), "bios", "by-node-and-arch"),
        (NodeInfo(mac="52:54:00:00:00:02", name="n7"), "arm64-efi", "local"),
        (NodeInfo(mac="52:54:00:00:00:02"), None, "local"),
    ],
)
def test_first_matching_rule_by_priority_then_id(
    node: NodeInfo, arch: str | None, expected: str
) -> None:
    assert choose(RULES, node, arch, "local") == expected


def test_rule_without_conditions_matches_everyone() -> None:
    rules = [Rule(id=9, profile="all", priority=1000)]
    assert choose(rules, NodeInfo(mac=MAC), None, "local") == "all"
