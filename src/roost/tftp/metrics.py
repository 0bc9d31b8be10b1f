"""Prometheus metrics of the TFTP server; updated per transfer, never per packet, except for
malformed packets, which are rare and are the point of counting."""

from prometheus_client import Counter, Gauge

MALFORMED = Counter(
    "roost_tftp_malformed_packets_total",
    "Datagrams that were not valid TFTP packets, dropped",
    ["socket"],  # "request" (the listening port) or "transfer" (a transfer's own port)
)
TRANSFERS = Counter("roost_tftp_transfers_total", "Read requests by outcome", ["outcome"])
BYTES = Counter("roost_tftp_bytes_total", "File bytes acknowledged by clients")
ACTIVE = Gauge("roost_tftp_active_transfers", "Transfers in progress")
