"""The shipped systemd unit and sysusers file: valid for systemd, and least privilege.

``systemd-analyze verify`` loads the unit as systemd would and prints a warning for every
unknown key or bad value (while still exiting 0), so the test wants no output at all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from roost import privileges

PACKAGING = Path(__file__).parents[2] / "packaging" / "systemd"
UNIT = PACKAGING / "roost.service"
SYSUSERS = PACKAGING / "roost.sysusers"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is absent (Debian package systemd; scripts/bootstrap installs it)")
    return path


def directives(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return {k.strip(): v.strip() for k, v in pairs}


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    # ExecStart must name an executable that exists here: this checkout's roost
    roost = Path(sys.executable).with_name("roost")
    unit = tmp_path / "roost.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/roost", str(roost)))
    out = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stderr.strip() == "" and out.stdout.strip() == "", (
        out.stdout + out.stderr
    )


def test_unit_runs_as_roost_with_only_the_network_capabilities() -> None:
    d = directives(UNIT.read_text())
    assert (d["User"], d["Group"]) == ("roost", "roost")
    caps = {privileges.NET_BIND_SERVICE, privileges.NET_RAW, privileges.NET_ADMIN}
    assert set(d["AmbientCapabilities"].split()) == caps
    assert set(d["CapabilityBoundingSet"].split()) == caps
    assert d["NoNewPrivileges"] == "yes" and d["ProtectSystem"] == "strict"
    assert d["ProtectHome"] == "yes" and d["PrivateTmp"] == "yes"
    assert (d["StateDirectory"], d["StateDirectoryMode"]) == ("roost", "0700")
    assert d["ReadWritePaths"] == "/var/lib/roost" == d["Environment"].split("=", 1)[1]
    assert d["UMask"] == "0077"


def test_sysusers_file_creates_a_roost_user_without_login(tmp_path: Path) -> None:
    sysusers = need("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    out = subprocess.run(
        [sysusers, f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    users = {line.split(":")[0]: line.split(":") for line in passwd}
    assert users["roost"][5:] == ["/var/lib/roost", "/usr/sbin/nologin"]
    assert int(users["roost"][2]) < 1000  # a system user
