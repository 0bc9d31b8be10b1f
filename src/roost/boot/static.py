"""Conditional and partial responses for boot files: ETag, If-None-Match, Range, HEAD.

Boot files are named blobs whose sha256 is known, so the strong ETag is the hash itself and
never needs computing. RFC 9110 rules applied: ``If-None-Match`` wins over
``If-Modified-Since`` (§13.2.2) and answers ``304`` for GET and HEAD (§13.1.2); a single byte
range gets ``206`` with ``Content-Range`` (§14.4), one that starts past the end gets ``416``
with ``Content-Range: bytes */size`` (§15.5.17); a set of several ranges is served as the
whole file, which §14.2 allows, since no boot client asks for multipart; ``If-Range`` that
does not match the ETag turns a range request into a full one (§13.1.5).
"""

from __future__ import annotations

import os
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from roost.boot.http11 import FileBody, Request, Response

UNSATISFIABLE = (-1, -1)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte of a single range, ``None`` to send everything,
    or :data:`UNSATISFIABLE`."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first_s:  # suffix range: the last N bytes
            n = int(last_s)
            if n < 0 or last_s.strip().startswith(("+", "-")):
                return None
            return UNSATISFIABLE if n == 0 or size == 0 else (max(0, size - n), size - 1)
        first = int(first_s)
        last = int(last_s) if last_s else None
    except ValueError:
        return None
    if first < 0 or first_s.strip().startswith(("+", "-")):
        return None
    if last is not None and (last < first or last_s.strip().startswith(("+", "-"))):
        return None  # invalid: §14.1.1 says ignore the header
    if first >= size:
        return UNSATISFIABLE
    return first, size - 1 if last is None else min(last, size - 1)


def _etag_listed(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    # weak comparison (§8.8.3.2): W/ prefixes do not matter for If-None-Match
    return etag in {t.strip().removeprefix("W/") for t in header.split(",")}


def not_modified(request: Request, etag: str, modified: datetime) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return _etag_listed(inm, etag)
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return since.tzinfo is not None and modified.replace(microsecond=0) <= since
    return False


def file_response(
    request: Request,
    path: Path,
    size: int,
    sha256: str,
    content_type: str,
    modified: datetime,
    extra: list[tuple[str, str]] | None = None,
    fd: int | None = None,
) -> Response:
    """``fd``: the file already open (then owned here: sent, or closed when no body goes out);
    else ``path`` is opened when a body is sent."""
    try:
        return _file_response(request, path, size, sha256, content_type, modified, extra, fd)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


def _file_response(
    request: Request,
    path: Path,
    size: int,
    sha256: str,
    content_type: str,
    modified: datetime,
    extra: list[tuple[str, str]] | None,
    fd: int | None,
) -> Response:
    etag = f'"{sha256}"'
    headers = [
        ("etag", etag),
        ("last-modified", format_datetime(modified, usegmt=True)),
        ("accept-ranges", "bytes"),
        *(extra or []),
    ]
    if not_modified(request, etag, modified):
        _close(fd)
        return Response(304, headers)
    wanted = parse_range(request.headers.get("range"), size)
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None
    if wanted == UNSATISFIABLE:
        _close(fd)
        return Response(416, [*headers, ("content-range", f"bytes */{size}")])
    headers.append(("content-type", content_type))
    if fd is None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if wanted is None:
        return Response(200, headers, file=FileBody(fd, 0, size))
    first, last = wanted
    headers.append(("content-range", f"bytes {first}-{last}/{size}"))
    return Response(206, headers, file=FileBody(fd, first, last - first + 1))


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
