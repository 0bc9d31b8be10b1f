"""Guest serial consoles: what a guest last said, following its log, attaching to it.

QEMU writes each guest's serial port to a Unix socket and logs it to a file as well, so
reading the log never disturbs the guest and attaching needs no extra tool.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

DETACH = b"\x1d"
"""Ctrl-] leaves an attached console, as in telnet."""


def last_line(log: Path, marker: str = "ROOST:") -> str:
    """The last line containing ``marker`` (the commissioning image's progress lines), else
    the last non-empty line; empty when the log is missing."""
    try:
        lines = [
            line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()
        ]
    except OSError:
        return ""
    marked = [line for line in lines if marker in line]
    return (marked or lines or [""])[-1]


def follow(log: Path, poll: float = 0.2) -> Iterator[str]:
    """Yield the log's text, then whatever is appended, until the caller stops."""
    while not log.exists():
        time.sleep(poll)
    with log.open("r", errors="replace") as f:
        while True:
            chunk = f.read()
            if chunk:
                yield chunk
            else:
                time.sleep(poll)


def attach(sock_path: Path) -> None:
    """Connect the terminal to the guest's serial port until Ctrl-] (raw mode on a tty)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(sock_path))
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    try:
        if saved is not None:
            tty.setraw(stdin)
        while True:
            ready, _, _ = select.select([sock, stdin], [], [])
            if sock in ready:
                data = sock.recv(4096)
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 1024)
                if not data or DETACH in data:
                    return
                sock.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            sock.close()
