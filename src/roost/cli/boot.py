"""``roost boot``: boot files (streamed, with progress bars), profiles, rules and previews."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from roost.boot.names import check_file_name
from roost.cli.common import (
    JSONOption,
    State,
    act,
    client,
    console,
    err_console,
    output,
    print_json,
)
from roost.client import ClientError, locate
from roost.errors import Invalid

app = typer.Typer(
    help="Boot files, boot profiles and the rules that choose them.", no_args_is_help=True
)
file_app = typer.Typer(
    help="The boot-file store (kernels, initrds, iPXE binaries).", no_args_is_help=True
)
profile_app = typer.Typer(
    help="Boot profiles: kernel, initrds, command line, templates.", no_args_is_help=True
)
rule_app = typer.Typer(
    help="Rules that choose a profile by arch, MAC, tag or node.", no_args_is_help=True
)
app.add_typer(file_app, name="file")
app.add_typer(profile_app, name="profile")
app.add_typer(rule_app, name="rule")

FILE_COLUMNS = ["name", "size", "arch", "node", "content_type", "sha256", "created_at"]
PROFILE_COLUMNS = ["name", "site", "kernel", "initrds", "cmdline", "templates", "description"]
RULE_COLUMNS = ["id", "priority", "site", "profile", "arch", "mac", "tag", "node"]
SITE_HELP = "its site (default: the token's one site; global for an unscoped token)"
_CHUNK = 1 << 20


def _http(ctx: typer.Context) -> httpx.Client:
    state: State = ctx.obj or State()
    conn = locate(state.url, state.token)
    headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
    timeout = httpx.Timeout(60.0, read=600.0)
    return httpx.Client(base_url=f"{conn.url}/api/v1", headers=headers, timeout=timeout)


def _check(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    resp.read()
    try:
        body = resp.json()
        raise ClientError(f"{resp.status_code} {body.get('title', '')}: {body.get('detail', '')}")
    except ValueError:
        raise ClientError(f"{resp.status_code}: {resp.text[:200]}") from None


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


# -- files ---------------------------------------------------------------------------------------


@file_app.command("put")
def file_put(
    ctx: typer.Context,
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    name: str | None = typer.Argument(None, help="name in the store (default: the file's name)"),
    arch: str | None = typer.Option(None, help="architecture, e.g. bios or x86_64-efi"),
    node: str | None = typer.Option(None, help="MAC of the only node that may fetch it"),
    content_type: str | None = typer.Option(None, help="default: guessed from the name"),
    as_json: bool = JSONOption,
) -> None:
    """Upload a file to the boot-file store, streaming it with a progress bar."""
    target = name or path.name
    size = path.stat().st_size
    params = {
        k: v for k, v in {"arch": arch, "node": node, "content_type": content_type}.items() if v
    }
    with _progress() as progress, _http(ctx) as http:
        task = progress.add_task(f"put {target}", total=size)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while piece := f.read(_CHUNK):
                    progress.advance(task, len(piece))
                    yield piece

        resp = http.put(
            f"/boot/files/{target}",
            content=chunks(),
            params=params,
            headers={"content-length": str(size), "content-type": "application/octet-stream"},
        )
        _check(resp)
    stored = resp.json()
    if as_json:
        print_json(stored)
    else:
        console.print(f"stored {stored['name']} ({stored['size']} B, sha256 {stored['sha256']})")


def _tree(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(store name, file) for every file under ``root``, and what is left out and why.

    The rules of a TFTP or ``boot.http_root`` tree: regular files, and symlinks that stay
    inside the tree; hidden entries (``.git``, ``.htaccess``) are left out."""
    real = root.resolve()
    found: list[tuple[str, Path]] = []
    left: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            name = path.relative_to(root).as_posix()
            target = path.resolve()
            if fname.startswith("."):
                continue
            if not target.is_relative_to(real):
                left.append(f"{name}: a symlink out of the tree")
            elif not target.is_file():
                left.append(f"{name}: not a regular file")
            else:
                found.append((name, path))
    return sorted(found), sorted(left)


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@app.command("import")
def file_import(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., exists=True, file_okay=False, readable=True),
    prefix: str = typer.Option("", help="put every name under this directory, e.g. legacy/"),
    as_json: bool = JSONOption,
) -> None:
    """Put a whole tree (a TFTP root, an nginx PXE tree) into the store, keeping names.

    ``DIR/pxelinux.cfg/default`` becomes ``pxelinux.cfg/default``, served at
    ``/files/pxelinux.cfg/default`` and over TFTP by that name. Files the store already holds
    with the same content are left as they are; every name is checked before anything is
    uploaded."""
    found, left = _tree(directory)
    named = [(prefix.strip("/") + "/" + n if prefix.strip("/") else n, p) for n, p in found]
    bad = []
    for name, _path in named:
        try:
            check_file_name(name)
        except Invalid as exc:
            bad.append(str(exc))
    if bad:
        raise ClientError("nothing imported; rename these first:\n  " + "\n  ".join(bad))
    with client(ctx) as c:
        stored = {f["name"]: f["sha256"] for f in c.get("/boot/files") if f.get("node") is None}
    todo = [(n, p) for n, p in named if stored.get(n) != _sha256(p)]
    total = sum(p.stat().st_size for _, p in todo)
    done: list[dict[str, Any]] = []
    with _progress() as progress, _http(ctx) as http:
        task = progress.add_task(f"import {directory}", total=total)
        for name, path in todo:

            def chunks(path: Path = path) -> Iterator[bytes]:
                with path.open("rb") as f:
                    while piece := f.read(_CHUNK):
                        progress.advance(task, len(piece))
                        yield piece

            resp = http.put(
                f"/boot/files/{name}",
                content=chunks(),
                headers={
                    "content-length": str(path.stat().st_size),
                    "content-type": "application/octet-stream",
                },
            )
            _check(resp)
            done.append(resp.json())
    summary = {
        "imported": [f["name"] for f in done],
        "unchanged": [n for n, _ in named if n not in {f["name"] for f in done}],
        "left_out": left,
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"imported {len(done)} files from {directory}, {len(summary['unchanged'])} unchanged"
    )
    for why in left:
        err_console.print(f"left out {why}")


@file_app.command("get")
def file_get(
    ctx: typer.Context,
    name: str,
    dest: Path | None = typer.Argument(
        None, help="where to write it (default: ./<name>, - for stdout)"
    ),
) -> None:
    """Download a boot file, streaming it with a progress bar."""
    to_stdout = str(dest) == "-"
    out = dest or Path(Path(name).name)
    if out.is_dir():
        out = out / Path(name).name
    with _http(ctx) as http, http.stream("GET", f"/boot/files/{name}") as resp:
        _check(resp)
        total = int(resp.headers.get("content-length", 0)) or None
        if to_stdout:
            for piece in resp.iter_bytes(_CHUNK):
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return
        tmp = out.with_name(f".{out.name}.part")
        with _progress() as progress, tmp.open("wb") as f:
            task = progress.add_task(f"get {name}", total=total)
            try:
                for piece in resp.iter_bytes(_CHUNK):
                    f.write(piece)
                    progress.advance(task, len(piece))
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        tmp.replace(out)
    console.print(f"wrote {out}")


@file_app.command("ls")
def file_ls(ctx: typer.Context, as_json: bool = JSONOption) -> None:
    """List the boot files."""
    with client(ctx) as c:
        output(c.get("/boot/files"), FILE_COLUMNS, as_json)


@file_app.command("rm")
def file_rm(ctx: typer.Context, name: str, as_json: bool = JSONOption) -> None:
    """Remove a boot file (its bytes go when no other name shares them)."""
    act(ctx, "DELETE", f"/boot/files/{name}", as_json, lambda gone: f"removed {gone['name']}")


# -- profiles ------------------------------------------------------------------------------------


def _templates(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        kind, sep, file = v.partition("=")
        if not sep:
            raise typer.BadParameter(f"{v!r}: write KIND=FILE, e.g. user-data=./user-data.yaml")
        out[kind] = Path(file).read_text()
    return out


@profile_app.command("add")
def profile_add(
    ctx: typer.Context,
    name: str,
    kernel: str | None = typer.Option(None, help="store name or URL of the kernel"),
    initrd: list[str] = typer.Option([], "--initrd", help="store name or URL (repeatable)"),
    cmdline: str = typer.Option("", help="kernel command line (a Jinja2 template)"),
    template: list[str] = typer.Option(
        [], "--template", help="KIND=FILE; KIND: ipxe, user-data, meta-data, preseed, kickstart"
    ),
    description: str = typer.Option("", help="what the profile is for"),
    replace: bool = typer.Option(False, "--replace", help="overwrite an existing profile"),
    site: str | None = typer.Option(None, help=f"{SITE_HELP}; a replace keeps it"),
    as_json: bool = JSONOption,
) -> None:
    """Add a boot profile (or replace one with --replace)."""
    body: dict[str, Any] = {
        "description": description,
        "kernel": kernel,
        "initrds": initrd,
        "cmdline": cmdline,
        "templates": _templates(template),
        **({"site": site} if site else {}),
    }
    headers = {} if replace else {"If-None-Match": "*"}
    act(
        ctx,
        "PUT",
        f"/boot/profiles/{name}",
        as_json,
        lambda saved: f"profile {saved['name']} saved",
        json=body,
        headers=headers,
    )


def _profile_row(p: dict[str, Any]) -> dict[str, Any]:
    return {**p, "initrds": " ".join(p["initrds"]), "templates": " ".join(sorted(p["templates"]))}


@profile_app.command("list")
def profile_list(ctx: typer.Context, as_json: bool = JSONOption) -> None:
    """List boot profiles, the built-in local one first."""
    with client(ctx) as c:
        rows = c.get("/boot/profiles")
    output(rows if as_json else [_profile_row(p) for p in rows], PROFILE_COLUMNS, as_json)


@profile_app.command("show")
def profile_show(ctx: typer.Context, name: str, as_json: bool = JSONOption) -> None:
    """Show one profile with its templates."""
    with client(ctx) as c:
        p = c.get(f"/boot/profiles/{name}")
    if as_json:
        print_json(p)
        return
    for key in ("name", "description", "kernel", "initrds", "cmdline"):
        console.print(f"[bold]{key}[/]: {json.dumps(p[key]) if key == 'initrds' else p[key]}")
    for kind, source in sorted(p["templates"].items()):
        console.rule(kind)
        console.print(source, markup=False, highlight=False)


@profile_app.command("rm")
def profile_rm(ctx: typer.Context, name: str) -> None:
    """Remove a profile (refused while rules use it)."""
    with client(ctx) as c:
        c.delete(f"/boot/profiles/{name}")
    console.print(f"profile {name} removed")


# -- rules and preview ---------------------------------------------------------------------------


@rule_app.command("add")
def rule_add(
    ctx: typer.Context,
    profile: str,
    arch: str | None = typer.Option(None, help="e.g. bios, x86_64-efi, arm64-efi"),
    mac: str | None = typer.Option(None),
    tag: str | None = typer.Option(None, help="a tag the node carries in the inventory"),
    node: str | None = typer.Option(None, help="the node's inventory name"),
    priority: int = typer.Option(100, help="lower is tried first"),
    site: str | None = typer.Option(None, help=f"{SITE_HELP}; it matches only its nodes"),
    as_json: bool = JSONOption,
) -> None:
    """Choose PROFILE for nodes matching every given condition (none: every node of the
    rule's site; every node at all for a global rule)."""
    body = {"profile": profile, "arch": arch, "mac": mac, "tag": tag, "node": node, "site": site}
    act(
        ctx,
        "POST",
        "/boot/rules",
        as_json,
        lambda rule: f"rule {rule['id']} added",
        json={**body, "priority": priority},
    )


@rule_app.command("list")
def rule_list(ctx: typer.Context, as_json: bool = JSONOption) -> None:
    """List rules in the order they are tried."""
    with client(ctx) as c:
        output(c.get("/boot/rules"), RULE_COLUMNS, as_json)


@rule_app.command("rm")
def rule_rm(ctx: typer.Context, rule_id: int) -> None:
    """Remove a rule."""
    with client(ctx) as c:
        c.delete(f"/boot/rules/{rule_id}")
    console.print(f"rule {rule_id} removed")


@app.command("render")
def render(
    ctx: typer.Context,
    mac: str,
    kind: str = typer.Option("ipxe", help="ipxe, user-data, meta-data, preseed or kickstart"),
    arch: str | None = typer.Option(None, help="architecture the node boots as"),
    http_base: str | None = typer.Option(None, help="boot server URL (default boot.public_url)"),
) -> None:
    """Print what the node with MAC would be served (contains its tokens)."""
    params = {k: v for k, v in {"arch": arch, "http_base": http_base}.items() if v}
    with _http(ctx) as http:
        resp = http.get(f"/boot/render/{mac}/{kind}", params=params)
        _check(resp)
    err_console.print(f"profile: {resp.headers.get('x-roost-profile')}")
    sys.stdout.write(resp.text)
