"""Validation of what nodes and operators name: MAC addresses, boot-file names, architectures.

Every name reaches this module before it touches the database, a URL or a template, so the
rules live in one place. Boot-file names are keys, never filesystem paths (blobs are stored by
sha256), and they are still held to a strict shape: segments of letters, digits and ``._+-``
joined by single slashes, no segment starting with a dot. That refuses ``..``, absolute paths,
backslashes, NUL, empty segments and hidden files before anyone has to reason about them.
"""

from __future__ import annotations

import re

from roost.errors import Invalid

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_ARCH = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PROFILE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# RFC 9110 §8.3.1: type/subtype and parameters; a header value, so no control characters
_MEDIA_TYPE = re.compile(
    rf'{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|"[\x20\x21\x23-\x5b\x5d-\x7e]*"))*'
)
MAX_NAME = 255

ARCHES = ("bios", "x86_64-efi", "i386-efi", "arm64-efi", "arm32-efi")
"""Architecture names Roost itself uses; rules may name others, matched literally."""

# iPXE's ${platform} and ${buildarch} settings, which a script URL can carry as query.
_IPXE_EFI = {"x86_64": "x86_64-efi", "i386": "i386-efi", "arm64": "arm64-efi", "arm32": "arm32-efi"}


def normalize_mac(value: str) -> str:
    """``AA:BB:…``, ``aa-bb-…`` or ``aabbccddeeff`` as ``aa:bb:cc:dd:ee:ff``, else Invalid."""
    v = value.strip().lower()
    if not _MAC.match(v):
        raise Invalid(f"{value!r} is not a MAC address; write it as aa:bb:cc:dd:ee:ff")
    hexdigits = v.replace(":", "").replace("-", "")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def check_file_name(name: str) -> str:
    """Return ``name`` if it is an acceptable boot-file name, else raise :class:`Invalid`."""
    if not name or len(name) > MAX_NAME:
        raise Invalid(f"boot-file names are 1 to {MAX_NAME} characters")
    if not all(_SEGMENT.match(seg) for seg in name.split("/")):
        raise Invalid(
            f"{name!r} is not a boot-file name: use letters, digits and ._+- in segments "
            "joined by single '/', no segment starting with '.'"
        )
    return name


def check_content_type(value: str) -> str:
    """A boot file's ``content_type``: sent as a response header, so a media type only."""
    if len(value) > 128 or not _MEDIA_TYPE.fullmatch(value):
        raise Invalid(
            f"content_type {value!r} is not a media type such as application/octet-stream "
            "(type/subtype, optional ;name=value parameters, no control characters)"
        )
    return value


def check_arch(arch: str) -> str:
    if not _ARCH.match(arch):
        raise Invalid(f"{arch!r} is not an architecture name (e.g. {', '.join(ARCHES)})")
    return arch


def check_profile_name(name: str) -> str:
    if not _PROFILE.match(name):
        raise Invalid(
            f"{name!r} is not a profile name: lower-case letters, digits and ._- , "
            "at most 64, starting with a letter or digit"
        )
    return name


def arch_from_ipxe(platform: str | None, buildarch: str | None) -> str | None:
    """Roost's architecture name from iPXE's ``${platform}`` and ``${buildarch}``."""
    if platform == "pcbios":
        return "bios"
    if platform == "efi" and buildarch:
        return _IPXE_EFI.get(buildarch)
    return None
