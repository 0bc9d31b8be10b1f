"""`roost serve` as a real process, driven by the `roost` CLI and plain HTTP."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOST = [sys.executable, "-m", "roost.cli"]


def _env(data_dir: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    env.update(ROOST_DATA_DIR=str(data_dir), ROOST_DATABASE__URL=db_url, ROOST_API__PORT="0")
    return env


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    client_file = Path(env["ROOST_DATA_DIR"]) / "client.toml"
    client_file.unlink(missing_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([*ROOST, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not client_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"roost serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc, tomllib.loads(client_file.read_text())["url"]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ROOST, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def served(
    tmp_path: Path, db_url: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, str]]]:
    env = _env(tmp_path / "data", db_url)
    proc, url = _start(env, tmp_path / "serve.log")
    try:
        yield proc, url, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_first_start_saves_admin_token_and_keeps_it_out_of_the_log(served, tmp_path: Path) -> None:
    _proc, url, env = served
    token_file = Path(env["ROOST_DATA_DIR"]) / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    log = (tmp_path / "serve.log").read_text()
    assert token not in log and token.split("_")[2] not in log
    assert str(token_file) in log  # the log says where the token is
    assert httpx.get(f"{url}/api/v1/events/history").status_code == 401
    ok = httpx.get(f"{url}/api/v1/events/history", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert "roost.started" in {e["type"] for e in ok.json()}


def test_first_admin_token_is_shown_on_a_terminal_and_not_in_the_log(
    tmp_path: Path, db_url: str
) -> None:
    env = _env(tmp_path / "data", db_url)
    log = tmp_path / "serve.log"
    controller, terminal = pty.openpty()
    with log.open("wb") as err:
        proc = subprocess.Popen([*ROOST, "serve"], env=env, stdout=terminal, stderr=err)
    os.close(terminal)
    shown = b""
    try:
        token_file = Path(env["ROOST_DATA_DIR"]) / "admin-token"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                shown += os.read(controller, 4096)
            if token_file.exists() and token_file.read_text().strip().encode() in shown:
                break
        token = token_file.read_text().strip()
        assert token.encode() in shown, (shown, log.read_text())
        assert token not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(15)
        os.close(controller)


def test_events_follow_shows_token_create(served) -> None:
    _proc, _url, env = served
    follower = subprocess.Popen(
        [*ROOST, "events", "--follow", "--type", "token.", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        created = _cli(env, "token", "create", "ci", "--role", "operator", "--json")
        assert created.returncode == 0, created.stderr
        token_id = json.loads(created.stdout)["id"]
        assert follower.stdout is not None
        line = follower.stdout.readline()
        event = json.loads(line)
        assert (event["type"], event["subject"]) == ("token.created", token_id)
    finally:
        follower.terminate()
        follower.communicate(timeout=10)
    listed = json.loads(_cli(env, "token", "list", "--json").stdout)
    assert {"ci", "admin (first start)"} <= {t["name"] for t in listed}
    revoked = _cli(env, "token", "revoke", token_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout


def test_sigterm_shuts_down_cleanly(served) -> None:
    proc, _url, _env = served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_sigkill_loses_no_committed_row(served, tmp_path: Path) -> None:
    proc, _url, env = served
    created = [
        json.loads(_cli(env, "token", "create", f"t{i}", "--json").stdout)["id"] for i in range(5)
    ]
    proc.kill()
    proc.wait()
    proc2, _url2 = _start(env, tmp_path / "serve2.log")
    try:
        tokens = json.loads(_cli(env, "token", "list", "--json").stdout)
        assert set(created) <= {t["id"] for t in tokens}
        events = json.loads(
            _cli(env, "events", "--type", "token.created", "--tail", "50", "--json").stdout
        )
        assert set(created) <= {e["subject"] for e in events}
    finally:
        proc2.terminate()
        proc2.wait(15)


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    bad = tmp_path / "roost.toml"
    bad.write_text("[log]\nlevel = 'loud'\n")
    env = _env(tmp_path, "sqlite+aiosqlite:///unused")
    result = _cli(env, "config", "show", "--config", str(bad))
    assert result.returncode == 1
    assert "log.level: Input should be 'debug', 'info', 'warning' or 'error'" in result.stderr
    assert "Traceback" not in result.stderr
    unknown = _cli(env, "token", "list", "--bogus")
    assert unknown.returncode == 2 and "No such option" in unknown.stderr
    unreachable = _cli(env, "--url", "http://127.0.0.1:9", "token", "list")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
