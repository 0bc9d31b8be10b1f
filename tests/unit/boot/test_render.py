"""Rendered boot documents against stored snapshots, and the template sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.boot.documents import template_for, variables
from roost.boot.profiles import LOCAL_PROFILE, NodeInfo, Profile, ProfileIn
from roost.boot.render import RenderError, TemplateKind, render
from roost.boot.tokens import BootTokens
from roost.errors import Invalid

pytestmark = pytest.mark.unit

SNAPSHOTS = Path(__file__).parents[2] / "snapshots" / "boot"
TOKENS = BootTokens(b"s" * 32)
MAC = "52:54:00:12:34:56"
BASE = "http://10.77.0.1:8442"

COMMISSION = Profile(
    name="commission",
    description="commissioning image",
    kernel="vmlinuz",
    initrds=["initrd.img", "https://mirror.example/extra.cpio.gz"],
    cmdline="console=ttyS0 roost.callback={{ callback_url }} roost.token={{ token }}",
    templates={
        "user-data": (SNAPSHOTS / "user-data.j2").read_text(),
        "preseed": (SNAPSHOTS / "preseed.j2").read_text(),
        "kickstart": (SNAPSHOTS / "kickstart.j2").read_text(),
    },
)


def _render(profile: Profile, kind: TemplateKind, arch: str | None) -> str:
    node = NodeInfo(mac=MAC, name="n1", hostname="rack1-n1", tags=("lab",))
    values = variables(
        profile,
        node,
        ip="10.77.0.100",
        arch=arch,
        http_base=BASE,
        token="enroll-token-1",
        boot_token=TOKENS.issue(MAC),
    )
    return render(template_for(profile, kind), values)


def _snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("ROOST_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; ROOST_UPDATE_SNAPSHOTS=1 rewrites it"


@pytest.mark.parametrize(
    ("snapshot", "profile", "kind", "arch"),
    [
        ("commission-bios.ipxe", COMMISSION, "ipxe", "bios"),
        ("commission-efi.ipxe", COMMISSION, "ipxe", "x86_64-efi"),
        ("local-bios.ipxe", LOCAL_PROFILE, "ipxe", "bios"),
        ("local-efi.ipxe", LOCAL_PROFILE, "ipxe", "x86_64-efi"),
        ("commission.user-data", COMMISSION, "user-data", None),
        ("commission.meta-data", COMMISSION, "meta-data", None),
        ("commission.preseed", COMMISSION, "preseed", "x86_64-efi"),
        ("commission.ks", COMMISSION, "kickstart", "x86_64-efi"),
    ],
)
def test_rendered_documents_match_snapshots(
    snapshot: str, profile: Profile, kind: TemplateKind, arch: str | None
) -> None:
    _snapshot(snapshot, _render(profile, kind, arch))


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ mac.__class__ }}",
        "{{ profile.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.system('id') }}",
        "{% set x = tags.append('root') %}{{ tags }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
    ],
)
def test_sandbox_refuses_attribute_escapes(escape: str) -> None:
    profile = Profile(name="evil", templates={"ipxe": escape})
    with pytest.raises(RenderError, match=r"SecurityError: access to attribute .* is unsafe"):
        _render(profile, "ipxe", "bios")


def test_unknown_variable_is_an_error_not_an_empty_string() -> None:
    profile = Profile(name="typo", templates={"ipxe": "#!ipxe\nkernel {{ kernal_url }}\n"})
    with pytest.raises(RenderError, match="kernal_url"):
        _render(profile, "ipxe", "bios")


def test_syntax_errors_are_refused_when_the_profile_is_saved() -> None:
    with pytest.raises(Invalid, match="line 2"):
        ProfileIn(kernel="vmlinuz", templates={"user-data": "#cloud-config\n{% if %}\n"})


def test_profile_needs_a_kernel_or_an_ipxe_template() -> None:
    with pytest.raises(ValueError, match="kernel or an ipxe template"):
        ProfileIn(cmdline="quiet")


def test_missing_template_kind_is_not_found() -> None:
    from roost.errors import NotFound

    with pytest.raises(NotFound, match="no preseed template"):
        template_for(LOCAL_PROFILE, "preseed")
