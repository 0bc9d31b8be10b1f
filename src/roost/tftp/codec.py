"""TFTP packets on the wire (RFC 1350, options RFC 2347), as pure functions over bytes.

Every packet starts with a 16-bit opcode. Requests (RRQ/WRQ) and OACK carry NUL-terminated
strings; DATA and ACK carry a 16-bit block number; ERROR a 16-bit code and a message.
:func:`decode` turns a datagram into one of the frozen dataclasses below or raises
:class:`DecodeError`, and nothing else, whatever the bytes; ``encode`` is its inverse. The session
builds DATA packets itself into preallocated buffers (the hot path) but uses the same layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "ACK",
    "DATA",
    "ERROR",
    "OACK",
    "RRQ",
    "WRQ",
    "Ack",
    "Data",
    "DecodeError",
    "Error",
    "ErrorCode",
    "OptionAck",
    "Packet",
    "Request",
    "decode",
    "encode",
    "error",
]

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")


class ErrorCode(IntEnum):
    """RFC 1350 §5 error codes, plus RFC 2347's option negotiation failure."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_NEGOTIATION = 8


class DecodeError(ValueError):
    """The datagram is not a well-formed TFTP packet; it is dropped and counted."""


@dataclass(frozen=True)
class Request:
    """RRQ or WRQ. ``options`` keeps the client's order; names are lower-cased (RFC 2347: case
    does not matter) and a repeated name keeps its first value."""

    opcode: int
    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    block: int
    data: bytes


@dataclass(frozen=True)
class Ack:
    block: int


@dataclass(frozen=True)
class Error:
    code: int
    message: str = ""


@dataclass(frozen=True)
class OptionAck:
    options: dict[str, str] = field(default_factory=dict)


Packet = Request | Data | Ack | Error | OptionAck


def _text(raw: bytes) -> str:
    # Names are netascii in RFC 1350; real clients send UTF-8 or Latin-1. surrogateescape keeps
    # every byte so the resolver, not the codec, decides what is acceptable.
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError("TFTP strings cannot contain NUL")
    return raw


def _strings(body: bytes) -> list[bytes]:
    """NUL-terminated strings; anything after the last NUL is not a complete string."""
    parts = body.split(b"\0")
    return parts[:-1]


def _options(parts: list[bytes]) -> dict[str, str]:
    options: dict[str, str] = {}
    # RFC 2347 §2: name/value pairs. A trailing name without a value (some PXE ROMs pad the
    # request) is ignored rather than failing the whole request.
    for i in range(0, len(parts) - 1, 2):
        name = _text(parts[i]).lower()
        if name and name not in options:
            options[name] = _text(parts[i + 1])
    return options


def decode(datagram: bytes) -> Packet:
    """Parse one datagram; raise :class:`DecodeError` when it is not a TFTP packet."""
    if len(datagram) < 2:
        raise DecodeError(f"{len(datagram)} bytes is shorter than any TFTP packet")
    (opcode,) = _H.unpack_from(datagram)
    if opcode in (DATA, ACK, ERROR) and len(datagram) < 4:
        raise DecodeError(f"{len(datagram)} bytes is too short for opcode {opcode}")
    if opcode in (DATA, ACK):
        (block,) = _H.unpack_from(datagram, 2)
        if opcode == ACK:
            if len(datagram) != 4:
                raise DecodeError("ACK must be 4 bytes")
            return Ack(block)
        return Data(block, bytes(datagram[4:]))
    if opcode == ERROR:
        (code,) = _H.unpack_from(datagram, 2)
        parts = _strings(datagram[4:])
        return Error(code, _text(parts[0]) if parts else "")
    if opcode in (RRQ, WRQ):
        parts = _strings(datagram[2:])
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise DecodeError("request needs a filename and a mode")
        return Request(opcode, _text(parts[0]), _text(parts[1]).lower(), _options(parts[2:]))
    if opcode == OACK:
        return OptionAck(_options(_strings(datagram[2:])))
    raise DecodeError(f"unknown opcode {opcode}")


def _pairs(options: dict[str, str]) -> bytes:
    return b"".join(_raw(k) + b"\0" + _raw(v) + b"\0" for k, v in options.items())


def encode(packet: Packet) -> bytes:
    """The wire form of a packet; ``decode(encode(p)) == p`` for every valid packet."""
    if isinstance(packet, Data):
        return _HH.pack(DATA, packet.block) + packet.data
    if isinstance(packet, Ack):
        return _HH.pack(ACK, packet.block)
    if isinstance(packet, Error):
        return _HH.pack(ERROR, packet.code) + _raw(packet.message) + b"\0"
    if isinstance(packet, OptionAck):
        return _H.pack(OACK) + _pairs(packet.options)
    head = _raw(packet.filename) + b"\0" + _raw(packet.mode) + b"\0"
    return _H.pack(packet.opcode) + head + _pairs(packet.options)


def error(code: int, message: str) -> bytes:
    """An ERROR packet; the message is made safe (no NUL) rather than refused."""
    return encode(Error(code, message.replace("\0", " ")))
