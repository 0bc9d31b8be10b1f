"""The DHCP package's errors: a packet that does not parse is the one thing a peer can do."""


class MalformedPacket(ValueError):
    """Bytes that are not a DHCP packet we can read; the packet is dropped and counted."""
