"""MAC and file-name validation (the traversal corpus) and per-node boot tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.boot.names import arch_from_ipxe, check_file_name, normalize_mac
from roost.boot.tokens import BootTokens
from roost.errors import Invalid

pytestmark = pytest.mark.unit

TRAVERSAL = [
    "../etc/passwd",
    "..",
    ".",
    "/etc/passwd",
    "a/../../b",
    "a/./b",
    "a//b",
    "a/",
    "..\\..\\windows",
    "a\\b",
    "a\x00b",
    ".hidden",
    "dir/.hidden",
    "a" * 256,
    "",
    "é.img",
    "a b",
    "~root",
]


@pytest.mark.parametrize("name", TRAVERSAL)
def test_traversal_and_odd_names_are_refused(name: str) -> None:
    with pytest.raises(Invalid):
        check_file_name(name)


@pytest.mark.parametrize("name", ["ipxe.efi", "debian/12/vmlinuz", "initrd-6.1.0+deb12.img"])
def test_plain_names_pass(name: str) -> None:
    assert check_file_name(name) == name


@given(st.text(max_size=300))
def test_any_accepted_name_has_no_escape(name: str) -> None:
    try:
        check_file_name(name)
    except Invalid:
        return
    segments = name.split("/")
    assert all(s and not s.startswith(".") for s in segments)
    assert "\\" not in name and "\x00" not in name and not name.startswith("/")


@pytest.mark.parametrize(
    "text", ["52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "525400abcdef", " 52:54:00:ab:cd:ef "]
)
def test_mac_forms_normalize_to_lower_colon(text: str) -> None:
    assert normalize_mac(text) == "52:54:00:ab:cd:ef"


@pytest.mark.parametrize("text", ["52:54:00:ab:cd", "52:54-00:ab:cd:ef", "zz:54:00:ab:cd:ef", ""])
def test_bad_macs_are_refused(text: str) -> None:
    with pytest.raises(Invalid):
        normalize_mac(text)


def test_ipxe_platform_to_arch() -> None:
    assert arch_from_ipxe("pcbios", "i386") == "bios"
    assert arch_from_ipxe("efi", "x86_64") == "x86_64-efi"
    assert arch_from_ipxe("efi", "arm64") == "arm64-efi"
    assert arch_from_ipxe(None, None) is None


def test_token_names_its_node_and_rejects_tampering() -> None:
    tokens = BootTokens(b"k" * 32)
    token = tokens.issue("52:54:00:AB:CD:EF")
    assert tokens.verify(token) == "52:54:00:ab:cd:ef"
    assert tokens.check("52:54:00:ab:cd:ef", token)
    assert not tokens.check("52:54:00:ab:cd:ee", token)
    other_mac = "525400abcdee" + token[12:]
    assert tokens.verify(other_mac) is None
    assert BootTokens(b"j" * 32).verify(token) is None  # another secret: another server
    # bound to the enrollment generation: the token of generation 0 is dead in generation 1
    assert tokens.verify(token, 1) is None and not tokens.check("52:54:00:ab:cd:ef", token, 1)
    assert tokens.verify(tokens.issue("52:54:00:ab:cd:ef", 1), 1) == "52:54:00:ab:cd:ef"
    for bad in ("", "-", token[:-1], token + "0", token.upper(), "ü" * 45):
        assert tokens.verify(bad) is None


def test_secret_file_is_created_private_and_reused(tmp_path) -> None:
    path = tmp_path / "boot" / "secret"
    first = BootTokens.load(path).issue("52:54:00:00:00:01")
    assert path.stat().st_mode & 0o777 == 0o600
    assert BootTokens.load(path).issue("52:54:00:00:00:01") == first
