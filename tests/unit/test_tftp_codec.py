"""TFTP codec: wire bytes from real clients, round trips, and arbitrary bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.tftp import codec
from roost.tftp.codec import Ack, Data, DecodeError, Error, OptionAck, Request

pytestmark = pytest.mark.unit

# Printable names without NUL; option names lower-case as the decoder normalises them.
names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
options = st.dictionaries(names.map(str.lower), values, max_size=6)
packets = st.one_of(
    st.builds(
        Request,
        st.sampled_from([codec.RRQ, codec.WRQ]),
        names,
        st.sampled_from(["octet", "netascii"]),
        options,
    ),
    st.builds(Data, st.integers(0, 0xFFFF), st.binary(max_size=1500)),
    st.builds(Ack, st.integers(0, 0xFFFF)),
    st.builds(Error, st.integers(0, 0xFFFF), values),
    st.builds(OptionAck, options),
)


@given(packets)
def test_decode_inverts_encode(packet: codec.Packet) -> None:
    assert codec.decode(codec.encode(packet)) == packet


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(raw)


def test_curl_read_request_bytes() -> None:
    # As sent by `curl --tftp-blksize 1468 tftp://host/f.bin` (captured on loopback).
    raw = b"\x00\x01f.bin\x00octet\x00tsize\x000\x00blksize\x001468\x00timeout\x006\x00"
    req = codec.decode(raw)
    assert req == Request(codec.RRQ, "f.bin", "octet",
                          {"tsize": "0", "blksize": "1468", "timeout": "6"})  # fmt: skip
    assert codec.encode(req) == raw


def test_option_names_case_insensitive_and_first_wins() -> None:
    raw = b"\x00\x01f\x00OCTET\x00BlkSize\x00900\x00blksize\x00100\x00dangling\x00"
    req = codec.decode(raw)
    assert isinstance(req, Request)
    assert req.mode == "octet"
    assert req.options == {"blksize": "900"}


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00", b"\x00\x04\x00", b"\x00\x04\x00\x01\x00", b"\x00\x07\x00\x00",
     b"\x00\x01\x00octet\x00", b"\x00\x01name-without-mode", b"\xff\xff\x00\x00"],
)  # fmt: skip
def test_malformed_packets_raise_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(raw)


def test_error_packet_drops_nul_from_message() -> None:
    assert codec.decode(codec.error(2, "a\0b")) == Error(2, "a b")
