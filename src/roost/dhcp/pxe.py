"""Boot policy: what a network-booting client is told to load (RFC 4578, PXE 2.1, UEFI HTTP).

The chain never loops: firmware PXE clients get the iPXE binary for their architecture over
TFTP; UEFI HTTP boot clients get the same binary as an http URL; iPXE itself (option 175 or
user class ``iPXE``) gets the URL of its per-node script. Per-node overrides come from the
reservation, per-tag ones from the subnet's boot settings and the ``tags_for(mac)`` callback
the inventory provides. Everything here is pure: the server calls :func:`decide`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from roost.dhcp.codec import Packet
from roost.dhcp.config import Boot, BootOverride
from roost.dhcp.options import Opt, encode_value

TagsFor = Callable[[str], set[str]]

# RFC 4578 §2.1 / IANA "Processor Architecture Types"
ARCH_BIOS = 0
ARCH_EFI_X64 = (7, 9)
ARCH_EFI_ARM64 = 11
ARCH_HTTP_X64 = 16
ARCH_HTTP_ARM64 = 19

# PXE 2.1 §2.4.6: option 43 sub-option 6 (discovery control) bit 3 = "the boot file named in
# this reply is all you need"; the list ends with 255 as the PXE spec asks.
PXE_VENDOR_OPTIONS = b"\x06\x01\x08\xff"
# iPXE option 175 sub-option 176 ("no-pxedhcp"): do not wait for a ProxyDHCP offer.
IPXE_NO_PXEDHCP = encode_value(Opt.IPXE, [(176, b"\x01")])


def no_tags(_mac: str) -> set[str]:
    return set()


@dataclass(frozen=True)
class BootClient:
    """What kind of network boot a request comes from; None fields when it is not one."""

    kind: str  # "pxe" (firmware), "http" (UEFI HTTP boot), "ipxe"
    arch: int


def classify(p: Packet) -> BootClient | None:
    vendor = p.options.get(Opt.VENDOR_CLASS, b"")
    arch_raw = p.options.get(Opt.CLIENT_ARCH, b"")
    arch = int.from_bytes(arch_raw[:2], "big") if len(arch_raw) >= 2 else ARCH_BIOS
    user_class = p.options.get(Opt.USER_CLASS, b"")
    if Opt.IPXE in p.options or user_class in (b"iPXE", b"\x04iPXE"):
        return BootClient("ipxe", arch)
    if vendor.startswith(b"HTTPClient") or arch in (ARCH_HTTP_X64, ARCH_HTTP_ARM64):
        return BootClient("http", arch)
    if vendor.startswith(b"PXEClient") or arch_raw:
        return BootClient("pxe", arch)
    return None


@dataclass
class BootReply:
    siaddr: int
    file: str
    options: dict[int, bytes] = field(default_factory=dict)


def _override(
    mac: str, boot: Boot, node: BootOverride | None, tags_for: TagsFor
) -> BootOverride | None:
    if node is not None and (node.boot_file or node.ipxe_script):
        return node
    for tag in sorted(tags_for(mac)):
        if tag in boot.tags:
            return boot.tags[tag]
    return None


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9:_-]+)\}")


def expand(url: str, mac: str, server: IPv4Address) -> str:
    """An iPXE script URL with Roost's placeholders filled in. They have iPXE's own names and
    meanings; any other ``${...}`` is left for iPXE to expand from its settings."""
    values = {"mac": mac, "mac:hexhyp": mac.replace(":", "-"), "next-server": str(server)}
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), url)


def decide(
    p: Packet,
    client: BootClient,
    boot: Boot,
    server: IPv4Address,
    http_port: int,
    node: BootOverride | None = None,
    tags_for: TagsFor = no_tags,
    proxy: bool = False,
    script_url: str | None = None,
) -> BootReply | None:
    """The boot file and options for this client, or None when there is nothing to boot.
    ``script_url`` is the server-wide iPXE script URL (``dhcp.ipxe_script_url``)."""
    if not boot.enabled:
        return None
    mac = p.mac
    base = f"http://{server}:{http_port}"
    over = _override(mac, boot, node, tags_for)
    opts: dict[int, bytes] = {}
    if client.kind == "ipxe":
        # the most specific wins: reservation, tag, subnet, server, built-in
        chosen = (over.ipxe_script if over else None) or boot.ipxe_script_url or script_url
        file = expand(chosen, mac, server) if chosen else f"{base}/boot/{mac}.ipxe"
        if len(file.encode()) > 127:  # more than the file field holds: option 67 carries it
            opts[Opt.BOOTFILE] = file.encode()
        if not proxy:
            opts[Opt.IPXE] = IPXE_NO_PXEDHCP
    elif client.kind == "http":
        name = boot.efi_arm64 if client.arch == ARCH_HTTP_ARM64 else boot.efi_x64
        file = f"{base}/files/{name}"
        # UEFI 2.x §24.7.2: an HTTP boot offer must carry vendor class "HTTPClient".
        opts[Opt.VENDOR_CLASS] = b"HTTPClient"
    else:
        if client.arch == ARCH_BIOS:
            file = boot.bios
        elif client.arch in ARCH_EFI_X64:
            file = boot.efi_x64
        elif client.arch == ARCH_EFI_ARM64:
            file = boot.efi_arm64
        else:
            return None
        if over and over.boot_file:
            file = over.boot_file
        # PXE 2.1 §2.2: a PXE reply names itself PXEClient and carries option 43.
        opts[Opt.VENDOR_CLASS] = b"PXEClient"
        opts[Opt.VENDOR_SPECIFIC] = PXE_VENDOR_OPTIONS
        opts[Opt.TFTP_SERVER] = str(server).encode()
        opts[Opt.BOOTFILE] = file.encode()
    return BootReply(siaddr=int(server), file=file, options=opts)
