"""Per-node boot documents: pick the node's profile, build its variables, render a template.

Used by the HTTP boot server for what nodes fetch and by the API to preview what a node would
get. The variables are the same for every kind of document, so a profile's iPXE script,
command line, cloud-init user-data, preseed and kickstart can all point at each other.
Two tokens appear in them, both decided by the :class:`Gate` (the enrollment policy of
:mod:`roost.boot.enrollment`): ``token``, a one-time enrollment token for command lines, and
``boot_token`` (the HMAC of :mod:`roost.boot.tokens`), which guards this server's node-private
URLs and the callback. A render that may not enroll carries neither: both are empty strings,
and so are the URLs that would carry the boot token.

Rendering goes through a :class:`roost.boot.render_pool.Renderer` (worker processes with a time
and an output limit in the boot service). A render that fails publishes ``boot.render.failed``,
at most once per profile every :data:`FAILURE_EVENT_INTERVAL` seconds.
"""

from __future__ import annotations

import posixpath
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from roost.boot.profiles import NodeInfo, Profile, ProfileBook
from roost.boot.render import (
    DEFAULT_IPXE,
    DEFAULT_META_DATA,
    MAX_OUTPUT,
    RenderError,
    TemplateKind,
    render,
)
from roost.boot.render_pool import InlineRenderer, Job, Renderer
from roost.boot.tokens import BootTokens
from roost.errors import NotFound
from roost.events import EventBus

_ARCHES_KEPT = 65536
FAILURE_EVENT_INTERVAL = 5.0
"""Seconds between two ``boot.render.failed`` events of one profile (anonymous clients can
ask for a broken render as often as they like)."""
NodeLookup = Callable[[str], Awaitable[NodeInfo | None]]
"""What the inventory knows about a MAC (name, hostname, arch, tags), or None."""


async def no_inventory(mac: str) -> NodeInfo | None:
    return None


@dataclass(frozen=True)
class Admission:
    """What one render of a MAC carries; None for what it may not have."""

    token: str | None
    """The one-time enrollment token for the command line."""
    boot_token: str | None
    """The HMAC token of the node's private URLs and callback."""


class Gate(Protocol):
    """The enrollment policy as the renderer and the boot server see it."""

    async def admit(self, mac: str, ip: str, mint: bool) -> Admission:
        """The tokens a render of ``mac`` for a client at ``ip`` carries; ``mint`` is False
        when its template cannot use the enrollment token (none is created then)."""
        ...

    async def check(self, mac: str, boot_token: str | None) -> bool:
        """True when ``boot_token`` opens ``mac``'s private URLs and callback now."""
        ...


def file_url(http_base: str, source: str) -> str:
    return source if "://" in source else f"{http_base}/files/{source}"


def variables(
    profile: Profile,
    node: NodeInfo,
    *,
    ip: str,
    arch: str | None,
    http_base: str,
    token: str | None,
    boot_token: str | None,
    render_cmdline: bool = True,
) -> dict[str, Any]:
    """Everything a template may use; see docs/boot.md for the list. Without a boot token
    the URLs that would carry it are empty strings, like the tokens themselves.
    ``render_cmdline=False`` leaves ``cmdline`` empty, for a :class:`Job` to render it."""
    mac = node.mac

    def guarded(url: str) -> str:
        return url if boot_token else ""

    private = guarded(f"{http_base}/private/{mac}/{boot_token}/")
    initrd_urls = [file_url(http_base, x) for x in profile.initrds]
    out: dict[str, Any] = {
        "mac": mac,
        "mac_hex": mac.replace(":", ""),
        "ip": ip,
        "hostname": node.hostname or node.name or f"node-{mac.replace(':', '')}",
        "arch": arch,
        "http_base": http_base,
        "token": token or "",
        "boot_token": boot_token or "",
        "callback_url": guarded(f"{http_base}/boot/callback/{boot_token}"),
        "enroll_url": f"{http_base}/boot/enroll",
        "script_url": f"{http_base}/boot/{mac}.ipxe" + (f"?arch={arch}" if arch else ""),
        "nocloud_url": guarded(f"{http_base}/nocloud/{mac}/{boot_token}/"),
        "preseed_url": guarded(f"{http_base}/preseed/{mac}/{boot_token}/preseed.cfg"),
        "kickstart_url": guarded(f"{http_base}/kickstart/{mac}/{boot_token}/ks.cfg"),
        "private_url": private,
        "kernel_url": file_url(http_base, profile.kernel) if profile.kernel else None,
        "initrd_urls": initrd_urls,
        "initrd_names": [posixpath.basename(urlsplit(u).path) for u in initrd_urls],
        "node": {"name": node.name, "tags": list(node.tags)},
        "tags": list(node.tags),
        "profile": {
            "name": profile.name,
            "description": profile.description,
            "kernel": profile.kernel,
            "initrds": list(profile.initrds),
        },
    }
    rendered = render_cmdline and profile.cmdline
    out["cmdline"] = render(profile.cmdline, out, "cmdline") if rendered else ""
    out["profile"]["cmdline"] = out["cmdline"]
    return out


def template_for(profile: Profile, kind: TemplateKind) -> str:
    source = profile.templates.get(kind)
    if source is not None:
        return source
    if kind == "ipxe" and profile.kernel:
        return DEFAULT_IPXE
    if kind == "meta-data":
        return DEFAULT_META_DATA
    raise NotFound(f"profile {profile.name!r} has no {kind} template")


@dataclass
class Rendered:
    profile: str
    kind: TemplateKind
    text: str


class Documents:
    """Renders what a node fetches; constructed without I/O."""

    def __init__(
        self,
        book: ProfileBook,
        tokens: BootTokens,
        default_profile: str,
        gate: Gate,
        lookup: NodeLookup = no_inventory,
        site: str | None = None,
        renderer: Renderer | None = None,
        bus: EventBus | None = None,
        max_output: int = MAX_OUTPUT,
    ) -> None:
        self.book = book
        self.tokens = tokens
        self.default_profile = default_profile
        self.gate = gate
        self.lookup = lookup
        self.site = site
        """The site of a MAC the inventory does not know: the server's, where it booted."""
        self.arches: OrderedDict[tuple[str, str], str] = OrderedDict()
        """(MAC, client address) → the architecture that client last asked for that MAC."""
        self.renderer: Renderer = renderer or InlineRenderer()
        self.bus = bus
        self.max_output = max_output
        self._failed: dict[str, float] = {}
        """Profile → when its last ``boot.render.failed`` was published (monotonic)."""

    async def check(self, mac: str, boot_token: str | None) -> bool:
        return await self.gate.check(mac, boot_token)

    def _arch(self, mac: str, ip: str, asked: str | None, stored: str | None) -> str | None:
        """The architecture of this render: the one asked for, else the inventory's, else the
        one this same client asked for this MAC before (user-data, preseed and kickstart are
        fetched without one, and must come from the script's profile). Remembered per client
        address, so an anonymous ``?arch=`` from elsewhere cannot change what the node gets."""
        key = (mac, ip)
        if asked:
            self.arches[key] = asked
            self.arches.move_to_end(key)
            if len(self.arches) > _ARCHES_KEPT:
                self.arches.popitem(last=False)
            return asked
        return stored or self.arches.get(key)

    async def render(
        self, kind: TemplateKind, mac: str, *, ip: str, arch: str | None, http_base: str
    ) -> Rendered:
        node = await self.lookup(mac) or NodeInfo(mac=mac, site=self.site)
        arch = self._arch(mac, ip, arch, node.arch)
        profile = await self.book.select(node, arch, self.default_profile)
        source = template_for(profile, kind)
        # A template that never names the token (the default meta-data, ``local``) gets none,
        # so such fetches create no rows; the substring test errs towards minting.
        mint = "token" in source or ("cmdline" in source and "token" in profile.cmdline)
        admitted = await self.gate.admit(mac, ip, mint)
        values = variables(
            profile,
            node,
            ip=ip,
            arch=arch,
            http_base=http_base,
            token=admitted.token,
            boot_token=admitted.boot_token,
            render_cmdline=False,
        )
        job = Job(profile.cmdline, source, values, f"{profile.name} {kind}", self.max_output)
        try:
            text = await self.renderer.render(job)
        except RenderError as exc:
            self._report(profile.name, kind, mac, exc, node.site)
            raise
        return Rendered(profile.name, kind, text)

    def _report(
        self, profile: str, kind: TemplateKind, mac: str, exc: RenderError, site: str | None
    ) -> None:
        if self.bus is None:
            return
        now = time.monotonic()
        if now - self._failed.get(profile, -FAILURE_EVENT_INTERVAL) < FAILURE_EVENT_INTERVAL:
            return
        self._failed[profile] = now
        data = {"profile": profile, "kind": kind, "mac": mac, "reason": exc.kind,
                "detail": str(exc)}  # fmt: skip
        self.bus.emit("boot.render.failed", profile, data, site=site)
