"""``roost boot`` as an operator runs it: a real CLI process against a live API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

ROOST = str(Path(sys.executable).parent / "roost")


async def roost(live_url: str, token: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "ROOST_URL": live_url, "ROOST_TOKEN": token, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        ROOST, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_file_put_ls_get_rm(live_url: str, admin_token: str, tmp_path: Path) -> None:
    src = tmp_path / "initrd.img"
    src.write_bytes(os.urandom(5 * 2**20 + 3))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()

    rc, out, err = await roost(live_url, admin_token, "boot", "file", "put", str(src), "--json")
    assert rc == 0, err
    assert json.loads(out)["sha256"] == sha
    assert "put initrd.img" in err  # the progress bar, on stderr

    rc, out, _ = await roost(live_url, admin_token, "boot", "file", "ls", "--json")
    assert [(f["name"], f["size"]) for f in json.loads(out)] == [("initrd.img", src.stat().st_size)]

    dest = tmp_path / "back.img"
    rc, out, err = await roost(
        live_url, admin_token, "boot", "file", "get", "initrd.img", str(dest)
    )
    assert rc == 0, err
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]

    rc, _, err = await roost(live_url, admin_token, "boot", "file", "rm", "initrd.img")
    assert rc == 0, err
    rc, _, err = await roost(live_url, admin_token, "boot", "file", "get", "initrd.img", str(dest))
    assert rc == 1 and "404" in err and "no boot file" in err


async def test_profile_add_list_show_rm(live_url: str, admin_token: str, tmp_path: Path) -> None:
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\nhostname: {{ hostname }}\n")
    add = ["boot", "profile", "add", "commission", "--kernel", "vmlinuz", "--initrd", "initrd.img"]
    add += ["--cmdline", "console=ttyS0", "--template", f"user-data={user_data}"]
    rc, out, err = await roost(live_url, admin_token, *add)
    assert rc == 0, err
    rc, _, err = await roost(live_url, admin_token, *add)
    assert rc == 1 and "--replace" in err
    rc, out, _ = await roost(live_url, admin_token, "boot", "profile", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == ["local", "commission"]
    rc, out, _ = await roost(live_url, admin_token, "boot", "profile", "show", "commission")
    assert "hostname: {{ hostname }}" in out and "console=ttyS0" in out
    rc, out, err = await roost(
        live_url, admin_token, "boot", "rule", "add", "commission", "--arch", "bios", "--json"
    )
    assert rc == 0, err
    rule_id = json.loads(out)["id"]
    rc, out, _ = await roost(
        live_url,
        admin_token,
        "boot",
        "render",
        "52:54:00:00:00:01",
        "--arch",
        "bios",
        "--http-base",
        "http://10.0.0.1:8442",
    )
    assert "kernel http://10.0.0.1:8442/files/vmlinuz initrd=initrd.img console=ttyS0" in out
    rc, _, err = await roost(live_url, admin_token, "boot", "rule", "rm", str(rule_id))
    assert rc == 0, err
    rc, _, err = await roost(live_url, admin_token, "boot", "profile", "rm", "commission")
    assert rc == 0, err


async def test_profile_and_rule_of_a_site(live_url: str, admin_token: str) -> None:
    rc, out, err = await roost(
        live_url, admin_token, "boot", "profile", "add", "east-p", "--kernel", "vmlinuz",
        "--site", "east", "--json",
    )  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["site"] == "east"
    rc, out, err = await roost(
        live_url, admin_token, "boot", "rule", "add", "east-p", "--site", "east", "--json"
    )
    assert rc == 0, err
    assert json.loads(out)["site"] == "east"
    rc, out, err = await roost(
        live_url, admin_token, "boot", "rule", "add", "east-p", "--site", "west"
    )
    assert rc == 1 and "422" in err and "its own site" in err
    rc, out, _ = await roost(live_url, admin_token, "boot", "rule", "list")
    assert rc == 0 and "site" in out and "east" in out


async def test_boot_import_puts_a_whole_tree_into_the_store(
    live_url: str, admin_token: str, tmp_path: Path
) -> None:
    tree = tmp_path / "tftpboot"
    (tree / "pxelinux.cfg").mkdir(parents=True)
    (tree / "images" / "debian").mkdir(parents=True)
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref")
    (tree / "boot.ipxe").write_text("#!ipxe\nchain images/debian/menu.ipxe\n")
    (tree / "pxelinux.cfg" / "default").write_text("DEFAULT local\n")
    kernel = os.urandom(2 * 2**20 + 5)
    (tree / "images" / "debian" / "vmlinuz").write_bytes(kernel)
    (tree / "images" / "latest").symlink_to("debian/vmlinuz")  # inside the tree: imported
    (tmp_path / "elsewhere").write_text("x")
    (tree / "escape").symlink_to(tmp_path / "elsewhere")  # out of it: left out
    rc, out, err = await roost(live_url, admin_token, "boot", "import", str(tree), "--json")
    assert rc == 0, err
    summary = json.loads(out)
    want = ["boot.ipxe", "images/debian/vmlinuz", "images/latest", "pxelinux.cfg/default"]
    assert summary["imported"] == want and summary["unchanged"] == []
    assert summary["left_out"] == ["escape: a symlink out of the tree"]
    rc, out, _ = await roost(live_url, admin_token, "boot", "file", "ls", "--json")
    files = {f["name"]: f["sha256"] for f in json.loads(out)}
    assert sorted(files) == want
    assert files["images/latest"] == hashlib.sha256(kernel).hexdigest()
    # again: nothing to send; a changed file is sent again
    (tree / "boot.ipxe").write_text("#!ipxe\nexit\n")
    rc, out, err = await roost(live_url, admin_token, "boot", "import", str(tree), "--json")
    assert rc == 0, err
    assert json.loads(out)["imported"] == ["boot.ipxe"]
    # with a prefix; and a name the store refuses stops everything before any upload
    (tree / "bad name.cfg").write_text("x")
    rc, _, err = await roost(live_url, admin_token, "boot", "import", str(tree))
    assert rc == 1 and "nothing imported" in err and "bad name.cfg" in err
    (tree / "bad name.cfg").unlink()
    rc, out, err = await roost(
        live_url, admin_token, "boot", "import", str(tree), "--prefix", "legacy/"
    )
    assert rc == 0 and "imported 4 files" in out, err
    rc, out, _ = await roost(live_url, admin_token, "boot", "file", "ls", "--json")
    assert "legacy/pxelinux.cfg/default" in {f["name"] for f in json.loads(out)}
