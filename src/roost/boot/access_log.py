"""The boot server's optional access log: one Common Log Format line per response.

Beside the ``boot.http.fetch`` events, for operators whose tools read web server logs. The
line has the query string (what iPXE asked with ``?platform=…``) but never a token: the path
is the one the handler noted, with ``<token>`` in place of one, and a ``token`` parameter's
value is masked the same way. Lines are appended with one ``write`` each on an ``O_APPEND``
descriptor, so they never interleave, and logrotate's ``copytruncate`` works.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from roost.boot.http11 import Request

MASK = "<token>"
_SAFE = "/:@!$&'()*+,;=-._~<>"  # kept as they are; anything else (quotes, spaces) %-encoded


def line(request: Request, status: int, sent: int, when: datetime) -> str:
    path = quote(request.note.get("path") or request.path, safe=_SAFE)
    if request.query:
        query = {k: (MASK if k == "token" else v) for k, v in request.query.items()}
        path += "?" + urlencode(query, safe=_SAFE)
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S %z")
    size = str(sent) if sent else "-"
    return f'{request.client} - - [{stamp}] "{request.method} {path} HTTP/1.1" {status} {size}\n'


class AccessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o640)

    def write(self, request: Request, status: int, sent: int) -> None:
        os.write(self._fd, line(request, status, sent, datetime.now(UTC)).encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
