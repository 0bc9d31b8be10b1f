"""dhcp.ipxe_script_url and a subnet's boot.ipxe_script_url: which URL an iPXE client is sent
(reservation, tag, subnet, server-wide, built-in), with placeholders, for a captured iPXE."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from roost.dhcp.codec import Packet, decode
from roost.dhcp.config import Boot, BootOverride, ReservationSpec
from roost.dhcp.options import Opt
from roost.dhcp.server import Policy
from roost.settings import DHCPSettings

from .helpers import INBOUND, lan, make_server, reply_packet

IPXE = decode((Path(__file__).parents[2] / "data" / "dhcp" / "ipxe-00-discover.bin").read_bytes())
MAC = "52:54:00:12:34:57"


def sent(packet: Packet, **kw: object) -> str:
    reply = reply_packet(make_server(**kw).handle(packet, INBOUND, 0))  # type: ignore[arg-type]
    return reply.file.rstrip(b"\0").decode()


def test_server_wide_url_with_placeholders_replaces_the_built_in_one() -> None:
    assert sent(IPXE) == f"http://10.0.0.1:8442/boot/{MAC}.ipxe"
    url = "http://${next-server}/pxe/${mac:hexhyp}.ipxe?m=${mac}&u=${uuid}"
    got = sent(IPXE, policy=Policy(ipxe_script_url=url))
    # ${uuid} is iPXE's own setting: left for iPXE to expand
    assert got == f"http://10.0.0.1/pxe/52-54-00-12-34-57.ipxe?m={MAC}&u=${{uuid}}"


def test_the_most_specific_url_wins() -> None:
    policy = Policy(ipxe_script_url="http://global/${mac}")
    subnet = lan(boot=Boot(ipxe_script_url="tftp://10.0.0.1/subnet.ipxe"))
    assert sent(IPXE, policy=policy) == f"http://global/{MAC}"
    assert sent(IPXE, subnets=[subnet], policy=policy) == "tftp://10.0.0.1/subnet.ipxe"
    tagged = lan(
        boot=Boot(
            ipxe_script_url="tftp://10.0.0.1/subnet.ipxe",
            tags={"gpu": BootOverride(ipxe_script="http://tag/${mac}")},
        )
    )
    srv = make_server([tagged], policy=policy)
    srv.tags_for = lambda mac: {"gpu"}
    assert (
        reply_packet(srv.handle(IPXE, INBOUND, 0)).file.rstrip(b"\0")
        == f"http://tag/{MAC}".encode()
    )
    node = ReservationSpec.model_validate(
        {"mac": MAC, "ip": "10.0.0.50", "boot": {"ipxe_script": "http://node/x"}}
    )
    assert sent(IPXE, subnets=[tagged], reservations=[node], policy=policy) == "http://node/x"


def test_a_long_url_goes_in_option_67_too() -> None:
    url = "http://boot.example/" + "a" * 200 + "/${mac}"
    reply = reply_packet(make_server(policy=Policy(ipxe_script_url=url)).handle(IPXE, INBOUND, 0))
    assert reply.options[Opt.BOOTFILE].decode() == url.replace("${mac}", MAC)


def test_firmware_pxe_clients_are_not_sent_the_script() -> None:
    firmware = decode(
        (Path(__file__).parents[2] / "data" / "dhcp" / "ipxe-00-discover.bin").read_bytes()
    )
    firmware.options.pop(Opt.USER_CLASS, None)
    firmware.options.pop(Opt.IPXE, None)
    assert sent(firmware, policy=Policy(ipxe_script_url="http://global/x")) == "undionly.kpxe"


@pytest.mark.parametrize("url", ["/boot.ipxe", "ftp://x/y", "http://a b", "http://" + "x" * 250])
def test_bad_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(ValidationError, match="ipxe_script_url"):
        Boot(ipxe_script_url=url)
    with pytest.raises(ValidationError, match="ipxe_script_url"):
        DHCPSettings(ipxe_script_url=url)
