"""Resolvers: the traversal corpus is refused, files inside the root are served."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from roost.tftp import resolver
from roost.tftp.files import MemoryFile, OpenFile, Snapshots, TFTPFile, to_netascii
from roost.tftp.resolver import ChainResolver, DirectoryResolver, TFTPDenied, safe_parts

pytestmark = pytest.mark.unit

CLIENT = ("192.0.2.10", 2000)

# Names a client could use to reach outside the root; every one must be refused.
TRAVERSAL = [
    "..",
    "../secret",
    "../../../../etc/passwd",
    "a/../../secret",
    "a/b/../../../secret",
    "/etc/passwd",
    "//etc/passwd",
    "/srv/tftp/ipxe.efi",
    "..\\secret",
    "a\\..\\..\\secret",
    "C:\\Windows\\win.ini",
    "ipxe.efi\0../../secret",
    "\0",
    "a\x01b",
    "a\nb",
    "x" * 256,
    "a/" * 128 + "b",
    "out/secret",  # symlink to a directory outside the root
    "out-file",  # symlink to a file outside the root
    "rel-out",  # relative symlink out of the root
    "sub/rel-up-out",  # relative symlink that climbs out through the parent
    "",
    ".",
    "./",
]


def traversal_tree(tmp_path: Path) -> Path:
    """A root with files, symlinks in and out of it and a FIFO, for :data:`TRAVERSAL`."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ipxe.efi").write_bytes(b"EFI" * 100)
    (root / "sub" / "undionly.kpxe").write_bytes(b"kpxe")
    (root / "out").symlink_to(outside)
    (root / "out-file").symlink_to(outside / "secret")
    (root / "in-link").symlink_to(root / "sub" / "undionly.kpxe")  # absolute, inside
    (root / "rel-link").symlink_to("sub/undionly.kpxe")
    (root / "sub" / "rel-up").symlink_to("../ipxe.efi")  # climbs, but stays inside
    (root / "rel-out").symlink_to("../outside/secret")
    (root / "sub" / "rel-up-out").symlink_to("../../outside/secret")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return traversal_tree(tmp_path)


@pytest.fixture(params=["openat2", "checked"])
def opening(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A test that takes this runs both ways a name is opened: with the kernel's openat2, and
    the checked way alone (as on a kernel without openat2)."""
    if request.param == "checked":
        monkeypatch.setattr(resolver, "_syscall", None)
    else:
        skip_without_openat2()
    return str(request.param)


def skip_without_openat2() -> None:
    """Skip, saying why, where openat2 cannot run: no ``syscall()`` in the libc, or a kernel
    older than 5.6 (ENOSYS; an absolute name with RESOLVE_BENEATH gets EXDEV where it runs)."""
    syscall = resolver._syscall
    if syscall is None:
        pytest.skip("no syscall() in this libc: openat2 cannot be called")
    how = resolver._HOW
    fd = syscall(resolver._SYS_OPENAT2, -100, b"/", ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        os.close(fd)
    elif ctypes.get_errno() == errno.ENOSYS:
        pytest.skip("this kernel has no openat2 (Linux 5.6 or later)")


def read_all(f: TFTPFile) -> bytes:
    buf = bytearray(f.size)
    n = f.readinto(0, memoryview(buf))
    f.close()
    return bytes(buf[:n])


@pytest.mark.parametrize("name", TRAVERSAL)
async def test_traversal_corpus_is_refused(tree: Path, name: str, opening: str) -> None:
    with pytest.raises(TFTPDenied):
        await DirectoryResolver(tree).resolve(name, CLIENT)


async def test_files_inside_the_root_are_served(tree: Path, opening: str) -> None:
    r = DirectoryResolver(tree)
    for name, want in [
        ("ipxe.efi", b"EFI" * 100),
        ("sub/undionly.kpxe", b"kpxe"),
        ("sub//./undionly.kpxe", b"kpxe"),
        ("in-link", b"kpxe"),  # a symlink that stays inside the tree is fine
        ("rel-link", b"kpxe"),
        ("sub/rel-up", b"EFI" * 100),
    ]:
        f = await r.resolve(name, CLIENT)
        assert f is not None and read_all(f) == want


async def test_missing_file_is_none_and_special_files_are_refused(tree: Path, opening: str) -> None:
    r = DirectoryResolver(tree)
    assert await r.resolve("nope.efi", CLIENT) is None
    assert await r.resolve("sub/nope/deeper", CLIENT) is None
    with pytest.raises(TFTPDenied, match="regular"):
        await r.resolve("fifo", CLIENT)  # and does not block opening it
    with pytest.raises(TFTPDenied):
        await r.resolve("sub", CLIENT)


async def test_openat2_opens_names_in_one_call_where_the_kernel_has_it(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_without_openat2()
    walked: list[str] = []
    realpath = os.path.realpath

    def counted(path: str) -> str:
        walked.append(path)
        return realpath(path)

    monkeypatch.setattr(os.path, "realpath", counted)
    r = DirectoryResolver(tree)
    for name in ("ipxe.efi", "sub/undionly.kpxe", "rel-link", "sub/rel-up", "nope"):
        found = await r.resolve(name, CLIENT)
        if found is not None:
            found.close()
    assert walked == []  # no name needed the checked walk
    assert await r.resolve("in-link", CLIENT) is not None  # absolute: openat2 refuses it,
    assert walked  # so it is walked and checked, and served because it stays inside
    assert resolver._syscall is not None  # the kernel has openat2: still in use


def test_safe_parts_normalises_harmless_forms() -> None:
    assert safe_parts("pxelinux.cfg//01-aa-bb") == ["pxelinux.cfg", "01-aa-bb"]
    assert safe_parts("./a/./b") == ["a", "b"]


class Rendered:
    """A resolver answering one name for one client IP, as a per-node script renderer would."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[str, int]]] = []

    async def resolve(self, path: str, client: tuple[str, int]) -> TFTPFile | None:
        self.asked.append((path, client))
        return MemoryFile(b"#!ipxe\n") if path == "ipxe.efi" and client[0] == CLIENT[0] else None


async def test_chain_asks_in_order_and_falls_through(tree: Path) -> None:
    rendered = Rendered()
    chain = ChainResolver([rendered, DirectoryResolver(tree)])
    first = await chain.resolve("ipxe.efi", CLIENT)
    assert first is not None and read_all(first) == b"#!ipxe\n"
    other = await chain.resolve("ipxe.efi", ("192.0.2.99", 1))
    assert other is not None and read_all(other) == b"EFI" * 100
    assert await chain.resolve("nope", CLIENT) is None
    assert [a[0] for a in rendered.asked] == ["ipxe.efi", "ipxe.efi", "nope"]


def test_netascii_conversion() -> None:
    f = to_netascii(MemoryFile(b"a\nb\rc\r\n"))
    assert read_all(f) == b"a\r\nb\r\0c\r\0\r\n"


def test_snapshots_share_one_copy_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "boot.bin"
    path.write_bytes(b"a" * 3000)
    snapshots = Snapshots()

    def opened() -> TFTPFile:
        return OpenFile(os.open(path, os.O_RDONLY))

    first, second = snapshots.share(opened()), snapshots.share(opened())
    assert isinstance(first, MemoryFile) and isinstance(second, MemoryFile)
    assert first.view().obj is second.view().obj  # one copy for both transfers
    path.write_bytes(b"b" * 3000)  # rewritten: a new transfer gets the new content
    third = snapshots.share(opened())
    buf = bytearray(3000)
    assert third.readinto(0, memoryview(buf)) == 3000 and bytes(buf) == b"b" * 3000
    for f in (first, second, third):
        f.close()
    assert snapshots._total == 0  # released with the last transfer


def test_snapshots_leave_large_files_and_memory_content_alone(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(2000))
    snapshots = Snapshots(file_limit=1000)
    big = OpenFile(os.open(path, os.O_RDONLY))
    assert snapshots.share(big) is big
    big.close()
    memory = MemoryFile(b"x")
    assert snapshots.share(memory) is memory
