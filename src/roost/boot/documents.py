"""Per-node boot documents: pick the node's profile, build its variables, render a template.

Used by the HTTP boot server for what nodes fetch and by the API to preview what a node would
get. The variables are the same for every kind of document, so a profile's iPXE script,
command line, cloud-init user-data, preseed and kickstart can all point at each other.
Two tokens appear in them: ``token`` (from the injectable ``token_for``; the lead may switch it
to one-time enrollment tokens) goes into command lines, and ``boot_token`` (the HMAC of
:mod:`roost.boot.tokens`) guards this server's node-private URLs and the callback.
"""

from __future__ import annotations

import inspect
import posixpath
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from roost.boot.profiles import NodeInfo, Profile, ProfileBook
from roost.boot.render import DEFAULT_IPXE, DEFAULT_META_DATA, TemplateKind, render
from roost.boot.tokens import BootTokens
from roost.errors import NotFound

_ARCHES_KEPT = 65536
TokenFor = Callable[[str], "str | Awaitable[str]"]
"""``token_for(mac)``: the token put into rendered command lines (sync or async)."""
NodeLookup = Callable[[str], Awaitable[NodeInfo | None]]
"""What the inventory knows about a MAC (name, hostname, arch, tags), or None."""


async def no_inventory(mac: str) -> NodeInfo | None:
    return None


def file_url(http_base: str, source: str) -> str:
    return source if "://" in source else f"{http_base}/files/{source}"


def variables(
    profile: Profile,
    node: NodeInfo,
    *,
    ip: str,
    arch: str | None,
    http_base: str,
    token: str,
    boot_token: str,
) -> dict[str, Any]:
    """Everything a template may use; see docs/boot.md for the list."""
    mac = node.mac
    private = f"{http_base}/private/{mac}/{boot_token}/"
    initrd_urls = [file_url(http_base, x) for x in profile.initrds]
    out: dict[str, Any] = {
        "mac": mac,
        "mac_hex": mac.replace(":", ""),
        "ip": ip,
        "hostname": node.hostname or node.name or f"node-{mac.replace(':', '')}",
        "arch": arch,
        "http_base": http_base,
        "token": token,
        "boot_token": boot_token,
        "callback_url": f"{http_base}/boot/callback/{boot_token}",
        "enroll_url": f"{http_base}/boot/enroll",
        "script_url": f"{http_base}/boot/{mac}.ipxe" + (f"?arch={arch}" if arch else ""),
        "nocloud_url": f"{http_base}/nocloud/{mac}/{boot_token}/",
        "preseed_url": f"{http_base}/preseed/{mac}/{boot_token}/preseed.cfg",
        "kickstart_url": f"{http_base}/kickstart/{mac}/{boot_token}/ks.cfg",
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
    out["cmdline"] = render(profile.cmdline, out, "cmdline") if profile.cmdline else ""
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
        token_for: TokenFor | None = None,
        lookup: NodeLookup = no_inventory,
        site: str | None = None,
    ) -> None:
        self.book = book
        self.tokens = tokens
        self.default_profile = default_profile
        self.token_for: TokenFor = token_for or tokens.issue
        self.lookup = lookup
        self.site = site
        """The site of a MAC the inventory does not know: the server's, where it booted."""
        self.arches: OrderedDict[str, str] = OrderedDict()

    async def render(
        self, kind: TemplateKind, mac: str, *, ip: str, arch: str | None, http_base: str
    ) -> Rendered:
        node = await self.lookup(mac) or NodeInfo(mac=mac, site=self.site)
        # user-data, preseed and kickstart are fetched without an architecture: use the one
        # the node's iPXE script was asked for, so every document comes from the same profile
        arch = arch or node.arch or self.arches.get(mac)
        if arch:
            self.arches[mac] = arch
            self.arches.move_to_end(mac)
            if len(self.arches) > _ARCHES_KEPT:
                self.arches.popitem(last=False)
        profile = await self.book.select(node, arch, self.default_profile)
        token = self.token_for(mac)
        if inspect.isawaitable(token):
            token = await token
        assert isinstance(token, str)
        values = variables(
            profile,
            node,
            ip=ip,
            arch=arch,
            http_base=http_base,
            token=token,
            boot_token=self.tokens.issue(mac),
        )
        source = template_for(profile, kind)
        return Rendered(profile.name, kind, render(source, values, f"{profile.name} {kind}"))
