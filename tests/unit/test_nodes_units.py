"""Pure parts of nodes: the transition table, MAC parsing, TTLs, secrets, the CA, request
signing and the CSV/JSON codec."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from roost.errors import ConfigError, Invalid
from roost.inventory import lifecycle, transfer
from roost.inventory.lifecycle import TRANSITIONS, State
from roost.inventory.store import normalize_mac
from roost.inventory.views import NodeOut, PowerOut
from roost.pki import ca as ca_mod
from roost.pki import nodeauth, signing
from roost.pki.tokens import parse_ttl
from roost.secrets import SecretBox, secret_box
from tests.integration.nodes_support import Agent

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_transition_table_is_complete_and_every_state_is_reachable() -> None:
    assert set(TRANSITIONS) == set(State)
    reachable, todo = {State.discovered}, [State.discovered]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert reachable == set(State)
    assert TRANSITIONS[State.retired] == {State.discovered}
    assert all(s not in TRANSITIONS[s] for s in State)


def test_check_refuses_with_the_allowed_moves() -> None:
    assert lifecycle.check(State.ready, State.deploying) is True
    assert lifecycle.check(State.ready, State.ready) is False
    with pytest.raises(Invalid, match=r"may become: discovered$"):
        lifecycle.check(State.retired, State.ready)


@given(st.binary(min_size=6, max_size=6), st.sampled_from([":", "-", ""]), st.booleans())
def test_mac_forms_normalize(raw: bytes, sep: str, upper: bool) -> None:
    canonical = ":".join(f"{b:02x}" for b in raw)
    text = sep.join(f"{b:02x}" for b in raw)
    assert normalize_mac(text.upper() if upper else text) == canonical


@given(st.text(max_size=30))
def test_mac_garbage_raises_only_invalid(text: str) -> None:
    with contextlib.suppress(Invalid):
        normalize_mac(text)


def test_ttl_forms() -> None:
    assert parse_ttl("90s") == timedelta(seconds=90)
    assert parse_ttl("1h") == parse_ttl(3600) == parse_ttl("3600")
    assert parse_ttl("2d") == timedelta(days=2)
    with pytest.raises(Invalid, match="not a duration"):
        parse_ttl("soon")


@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_secret_box_round_trip_and_purpose_binding(data: bytes, purpose: str) -> None:
    box = SecretBox(bytes(32))
    sealed = box.seal(data, purpose)
    assert box.open(sealed, purpose) == data
    with pytest.raises(ConfigError):
        box.open(sealed, purpose + "x")


def test_secret_key_file_is_private_and_stable(tmp_path: Path) -> None:
    box = secret_box(tmp_path / "d")
    key = tmp_path / "d" / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    sealed = box.seal_json({"password": "x"}, "p")
    assert SecretBox(key.read_bytes()).open_json(sealed, "p") == {"password": "x"}
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "secret.key").write_bytes(bytes(32))
    os.chmod(loose / "secret.key", 0o640)
    with pytest.raises(ConfigError, match="must be 0600"):
        secret_box(loose)


def test_ca_issues_client_certificates_with_its_own_subject(tmp_path: Path) -> None:
    ca = ca_mod.load_or_create(tmp_path, "Roost CA (test)", NOW)
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600
    agent = Agent.new()
    csr = x509.load_pem_x509_csr(agent.csr().encode())
    cert = ca.issue(csr, 42, NOW, timedelta(hours=1))
    assert cert.subject.rfc4514_string() == "CN=node-42"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:roost:node:42"]
    assert ca.issued_by_me(cert)
    assert cert.not_valid_after_utc == NOW + timedelta(hours=1)
    other = ca_mod.load_or_create(tmp_path / "other", "other", NOW)
    assert not other.issued_by_me(cert)


def test_signature_covers_method_target_time_nonce_and_body() -> None:
    agent = Agent.new()
    msg = signing.canonical("put", "/api/v1/nodes/self/facts?x=1", "100", "n" * 16, b"{}")
    sig = signing.sign(agent.key, msg)
    assert signing.verify(agent.key.public_key(), sig, msg)
    for changed in (
        signing.canonical("GET", "/api/v1/nodes/self/facts?x=1", "100", "n" * 16, b"{}"),
        signing.canonical("PUT", "/api/v1/nodes/self/facts", "100", "n" * 16, b"{}"),
        signing.canonical("PUT", "/api/v1/nodes/self/facts?x=1", "101", "n" * 16, b"{}"),
        signing.canonical("PUT", "/api/v1/nodes/self/facts?x=1", "100", "m" * 16, b"{}"),
        signing.canonical("PUT", "/api/v1/nodes/self/facts?x=1", "100", "n" * 16, b"[]"),
    ):
        assert not signing.verify(agent.key.public_key(), sig, changed)


def test_replay_guard_forgets_after_the_window() -> None:
    guard = nodeauth.ReplayGuard(window=10)
    guard.check("a", 0)
    with pytest.raises(nodeauth.NodeAuthFailed, match="replayed"):
        guard.check("a", 5)
    guard.check("b", 100)
    guard.check("a", 100)


def test_tls_extension_gives_the_peer_certificate(tmp_path: Path) -> None:
    ca = ca_mod.load_or_create(tmp_path, "t", NOW)
    agent = Agent.new()
    cert = ca.issue(x509.load_pem_x509_csr(agent.csr().encode()), 7, NOW, timedelta(hours=1))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    ok = {"extensions": {"tls": {"client_cert_chain": [pem], "client_cert_error": None}}}
    assert nodeauth.from_tls(ok) == cert
    failed = {"extensions": {"tls": {"client_cert_chain": [pem], "client_cert_error": "x"}}}
    assert nodeauth.from_tls(failed) is None
    assert nodeauth.from_tls({"type": "http"}) is None


_tag = st.from_regex(r"[a-z0-9][a-z0-9_.:-]{0,8}", fullmatch=True)


@given(
    st.binary(min_size=6, max_size=6),
    st.lists(_tag, max_size=4, unique=True),
    st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)),
    st.dictionaries(st.sampled_from(["host", "port", "password"]), st.text(max_size=10)),
)
def test_csv_export_imports_back_to_the_same_spec(
    raw: bytes, tags: list[str], hostname: str | None, settings: dict[str, str]
) -> None:
    mac = ":".join(f"{b:02x}" for b in raw)
    node = NodeOut(
        id=1,
        hostname=hostname,
        site="lab",
        mac=mac,
        ip=None,
        state="ready",
        state_reason="",
        tags=sorted(tags),
        architecture="arm64",
        vendor=None,
        interfaces=[],
        facts={},
        boot_profile=None,
        power=PowerOut(driver="ipmi" if settings else None, settings=settings),
        certificate=None,
        last_seen=None,
        created_at=NOW,
        updated_at=NOW,
    )
    record = transfer.export_record(node)
    (spec,) = transfer.parse(transfer.to_csv([record]).encode(), "text/csv")
    (from_json,) = transfer.parse(json.dumps([record]).encode(), "application/json")
    for got in (spec, from_json):
        assert got.mac == mac and got.hostname == hostname and got.tags == sorted(tags)
        assert got.power_settings == settings and got.architecture == "arm64"
