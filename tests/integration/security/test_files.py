"""What Roost keeps on disk is its user's only: data directory 0700, its files 0600.

The attack is a local user of the server host reading the database (token hashes, sealed
power secrets, node facts), its WAL or a node-private boot file. ``roost serve`` runs here
with the test runner's umask (022, as a login shell has it), which would make them 0644.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.security.conftest import Roost, start_roost


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_data_dir_database_wal_and_blobs_are_private(wide_umask: None, tmp_path: Path) -> None:
    roost = start_roost(tmp_path)
    try:
        api = roost.api()
        shared = api.put("/boot/files/shared.ipxe", content=b"#!ipxe\n")
        private = api.put(
            "/boot/files/n1-secret.cfg", content=b"password", params={"node": "52:54:00:00:00:01"}
        )
        assert shared.status_code == 201 and private.status_code == 201, private.text
        db = tmp_path / "roost.db"
        paths = [db, db.with_name("roost.db-wal"), db.with_name("roost.db-shm")]
        paths += [roost.data_dir / "admin-token", roost.data_dir / "client.toml"]
        blobs = sorted((roost.data_dir / "boot" / "blobs").glob("*/*"))
        assert len(blobs) == 2
        assert {p: oct(mode(p)) for p in [*paths, *blobs]} == {
            p: oct(0o600) for p in [*paths, *blobs]
        }
        dirs = [roost.data_dir, *(p for p in roost.data_dir.rglob("*") if p.is_dir())]
        assert {d: oct(mode(d)) for d in dirs} == {d: oct(0o700) for d in dirs}
    finally:
        roost.stop()


def test_a_wider_data_dir_and_database_are_tightened_at_start(
    wide_umask: None, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    db = tmp_path / "roost.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    roost: Roost = start_roost(tmp_path)
    try:
        assert oct(mode(data_dir)) == oct(0o700)
        assert oct(mode(db)) == oct(0o600)
        assert "mode 0755; now 0700" in roost.log.read_text()
    finally:
        roost.stop()
