"""boot.access_log: a Common Log Format line per response, query strings kept, tokens never
written; driven by the real curl against the boot service."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.boot.service import BootService
from roost.errors import ConfigError
from roost.service import Runtime

from .conftest import chunks_of, curl

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
MAC = "52:54:00:aa:bb:07"
CLF = re.compile(
    r"^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
    r'"(GET|HEAD|POST) (\S+) HTTP/1\.1" (\d{3}) (\d+|-)$'
)


def boot_settings(runtime: Runtime, **update: object) -> None:
    runtime.settings.boot = runtime.settings.boot.model_copy(
        update={"enabled": True, "host": "127.0.0.1", "http_port": 0, "import_ipxe": False,
                **update}
    )  # fmt: skip


@pytest.fixture
async def logged(runtime: Runtime, tmp_path: Path) -> AsyncIterator[tuple[BootService, Path]]:
    path = tmp_path / "access.log"
    boot_settings(runtime, access_log=path)
    svc = BootService(runtime)
    await svc.start()
    try:
        yield svc, path
    finally:
        await svc.stop()


async def test_every_response_is_logged_with_its_query_and_no_token(
    logged: tuple[BootService, Path],
) -> None:
    svc, path = logged
    assert svc.address is not None and svc.documents is not None
    url = f"http://127.0.0.1:{svc.address[1]}"
    await svc.store.put("ipxe.efi", chunks_of(b"x" * 1000))
    token = svc.documents.tokens.issue(MAC)
    await curl("-o", "/dev/null", f"{url}/files/ipxe.efi")
    await curl("-o", "/dev/null", f"{url}/boot/{MAC}.ipxe?platform=efi&buildarch=x86_64")
    await curl("-o", "/dev/null", f"{url}/nocloud/{MAC}/user-data?token={token}")
    await curl("-o", "/dev/null", f"{url}/nocloud/{MAC}/{token}/user-data")
    await curl("-o", "/dev/null", "-I", f"{url}/files/missing%20%22file%22")
    text = path.read_text()
    assert token not in text and token.split("-")[1] not in text
    rows = [CLF.match(line) for line in text.splitlines()]
    assert all(rows), text
    got = [(m[1], m[2], m[3]) for m in rows if m]
    assert got == [
        ("GET", "/files/ipxe.efi", "200"),
        ("GET", f"/boot/{MAC}.ipxe?platform=efi&buildarch=x86_64", "200"),
        # the default profile (local) has no user-data: 404, after the token was accepted
        ("GET", f"/nocloud/{MAC}/user-data?token=<token>", "404"),
        ("GET", f"/nocloud/{MAC}/<token>/user-data", "404"),
        ("HEAD", "/files/missing%20%22file%22", "400"),  # a quote is no boot-file name
    ]
    assert rows[0] is not None and rows[0][4] == "1000"


async def test_an_unwritable_access_log_is_a_clear_start_up_error(
    runtime: Runtime, tmp_path: Path
) -> None:
    boot_settings(runtime, access_log=tmp_path / "no" / "such" / "dir" / "access.log")
    svc = BootService(runtime)
    with pytest.raises(ConfigError, match=r"boot\.access_log: cannot open"):
        await svc.start()
    await svc.stop()
