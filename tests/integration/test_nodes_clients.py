"""Real clients against a real server: busybox wget enrolls as the commissioning initramfs
does, openssl makes the CSR and verifies the certificate and CRL Roost issued, and the
``roost`` CLI drives the inventory end to end."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from roost.cli import app as cli_app
from roost.pki.tokens import issue_enrollment_token
from roost.service import Runtime

ROOST = str(Path(sys.executable).parent / "roost")
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _run(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},  # rich would wrap tables to a narrow terminal
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/debian-packages.txt lists it)")
    return path


@SQLITE_ONLY
async def test_busybox_wget_enrolls_like_the_commissioning_image(
    live_url: str, runtime: Runtime, api: httpx.AsyncClient
) -> None:
    """The commissioning image's /init POSTs its facts document (with ``mac`` and ``ip``) to
    ``<roost.callback>/<roost.token>`` with busybox wget; pointed at the enroll endpoint, that
    enrolls the node."""
    busybox = _need("busybox")
    mac = "52:54:00:00:03:01"
    token = await issue_enrollment_token(runtime.db, mac=mac, ttl="10m")
    facts = {"mac": mac, "ip": "10.0.0.31", "cpu": {"count": 1}, "firmware": "bios"}
    argv = [busybox, "wget", "-q", "-O", "-", "--header", "Content-Type: application/json",
            "--post-data", json.dumps(facts), f"{live_url}/api/v1/enroll/{token}"]  # fmt: skip
    rc, out, err = await _run(*argv)
    assert rc == 0, err
    assert json.loads(out)["state"] == "ready"
    node = (await api.get(f"/api/v1/nodes/{mac}")).json()
    assert node["facts"] == {"cpu": {"count": 1}, "firmware": "bios"}
    assert node["ip"] == "10.0.0.31" and node["state"] == "ready"
    rc, _, err = await _run(*argv)
    assert rc != 0 and "401" in err


@SQLITE_ONLY
async def test_openssl_csr_gets_a_certificate_that_openssl_verifies(
    live_url: str, runtime: Runtime, tmp_path: Path
) -> None:
    openssl = _need("openssl")
    key, csr = tmp_path / "node.key", tmp_path / "node.csr"
    rc, _, err = await _run(
        openssl,
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=whatever",
    )
    assert rc == 0, err
    token = await issue_enrollment_token(runtime.db, site="lab", ttl=600)
    async with httpx.AsyncClient(base_url=live_url) as http:
        resp = await http.post(
            "/api/v1/enroll",
            json={"token": token, "mac": "52:54:00:00:03:02", "csr": csr.read_text()},
        )
        assert resp.status_code == 200, resp.text
        ca = (await http.get("/api/v1/pki/ca.pem")).text
    (tmp_path / "ca.pem").write_text(ca)
    (tmp_path / "node.pem").write_text(resp.json()["certificate"])
    rc, out, err = await _run(
        openssl,
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        str(tmp_path / "ca.pem"),
        str(tmp_path / "node.pem"),
    )
    assert rc == 0 and "OK" in out, out + err
    async with httpx.AsyncClient(base_url=live_url) as http:
        crl = (await http.get("/api/v1/pki/crl.pem")).text
    (tmp_path / "crl.pem").write_text(crl)
    rc, _, err = await _run(
        openssl,
        "crl",
        "-in",
        str(tmp_path / "crl.pem"),
        "-CAfile",
        str(tmp_path / "ca.pem"),
        "-noout",
    )
    assert rc == 0 and "verify OK" in err


@SQLITE_ONLY
async def test_cli_inventory_end_to_end(live_url: str, admin_token: str, tmp_path: Path) -> None:
    base = [ROOST, "--url", live_url, "--token", admin_token]

    async def roost(*args: str, input: str | None = None) -> str:
        """The CLI in process (a worker thread; the server runs on this loop): the same Typer
        app as the ``roost`` command without paying its start-up per call."""
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, [*base[1:], *args], input, env={"COLUMNS": "200"}
        )
        assert result.exit_code == 0, (
            f"roost {' '.join(args)}: {result.output} {result.exception!r}"
        )
        return result.output

    added = json.loads(
        await roost(
            "node",
            "add",
            "52:54:00:00:04:01",
            "--hostname",
            "n1",
            "--site",
            "lab",
            "--tag",
            "gpu",
            "--json",
        )
    )
    assert added[0]["state"] == "discovered"
    csv_in = tmp_path / "nodes.csv"
    csv_in.write_text("mac,site,tags\n52:54:00:00:04:02,dc1,gpu;edge\n52:54:00:00:04:03,dc1,\n")
    assert "2 nodes created, 0 updated" in await roost("node", "import", str(csv_in))
    await roost("node", "tag", "n1", "rack1", "rack2")
    await roost("node", "untag", "n1", "rack2")
    listed = json.loads(await roost("node", "list", "--tag", "gpu", "--json"))
    assert sorted(n["mac"] for n in listed) == ["52:54:00:00:04:01", "52:54:00:00:04:02"]
    in_dc1 = json.loads(await roost("node", "list", "--site", "dc1", "--tag", "edge", "--json"))
    assert [n["mac"] for n in in_dc1] == ["52:54:00:00:04:02"]
    shown = json.loads(await roost("node", "show", "n1", "--json"))
    assert shown["tags"] == ["gpu", "rack1"] and shown["history"][0]["to"] == "discovered"
    await roost("node", "state", "n1", "ready", "--reason", "checked by hand")
    exported = await roost("node", "export", "--format", "csv", "--site", "lab")
    assert ",ready," in exported and "gpu;rack1" in exported
    table = await roost("node", "list")
    assert "n1" in table and "52:54:00:00:04:03" in table
    await roost("node", "add", "52:54:00:ab:cd:01", "--hostname", "emoji")
    shown_text = await roost("node", "show", "emoji")
    # Rich would turn ":ab:" into an emoji; the MAC must print as it is.
    assert "52:54:00:ab:cd:01" in await roost("node", "list") and "52:54:00:ab:cd:01" in shown_text
    token_out = json.loads(
        await roost("enroll", "token", "create", "--node", "n1", "--ttl", "5m", "--json")
    )
    assert token_out["token"].startswith("rnroll_") and token_out["node_id"] == added[0]["id"]
    tokens = json.loads(await roost("enroll", "token", "list", "--json"))
    assert [t["id"] for t in tokens] == [token_out["id"]] and "token" not in tokens[0]
    assert "revoked 0 certificate(s)" in await roost("node", "revoke", "n1")
    await roost("node", "rm", "n1", "--yes")
    gone = await asyncio.to_thread(CliRunner().invoke, cli_app, [*base[1:], "node", "show", "n1"])
    assert gone.exit_code == 1 and "no node 'n1'" in str(gone.exception)
    # Power drivers' own settings are flags; a secret given as "-" is prompted for.
    await roost("node", "add", "52:54:00:00:04:09", "--hostname", "p1", "--power-driver", "fake",
                "--machine", "rnd-cli", "--initial-state", "on", "--password", "-",
                input="pw-from-prompt\n")  # fmt: skip
    await roost("node", "set", "p1", "--fail-times", "0")
    assert "power on" in await roost("node", "power", "p1", "status")
    assert "next boot from pxe" in await roost("node", "boot-device", "p1", "pxe")
    shown = json.loads(await roost("node", "show", "p1", "--json"))
    assert shown["power"]["settings"]["password"] == "***"
    assert shown["power"]["settings"]["machine"] == "rnd-cli"
    assert "--initial-state" in await roost("node", "drivers", "fake")
    # The installed command itself: errors exit 1 with the server's precise message.
    rc, _, err = await _run(*base, "node", "power", "52:54:00:00:04:02", "on")
    assert rc == 1 and "has no power driver" in err
