"""Prometheus metrics of the DHCP server (served by the foundation's ``/metrics``).

The per-packet figures (requests received, replies sent, drops, reply latency) are plain
integers that :data:`PACKETS` keeps and a collector turns into Prometheus metrics when
``/metrics`` is read: a ``prometheus_client`` counter or histogram takes a lock on every
update, which cost several microseconds per exchange on the packet path. Per-batch figures use
``prometheus_client`` directly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

TYPE_NAMES = {
    1: "discover",
    2: "offer",
    3: "request",
    4: "decline",
    5: "ack",
    6: "nak",
    7: "release",
    8: "inform",
}
REPLY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class PacketStats(Collector):
    """Counters by message type and drop reason, and the reply-latency histogram by type."""

    def __init__(self) -> None:
        self.received = dict.fromkeys(TYPE_NAMES, 0)
        self.sent = dict.fromkeys(TYPE_NAMES, 0)
        self.dropped: dict[str, int] = {}
        # per reply type: observations per bucket (the last is +Inf, not cumulative) and sum
        self.latency = {t: [0] * (len(REPLY_BUCKETS) + 1) for t in TYPE_NAMES}
        self.latency_sum = dict.fromkeys(TYPE_NAMES, 0.0)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def replied(self, mtype: int, seconds: float) -> None:
        self.sent[mtype] += 1
        self.latency[mtype][bisect_left(REPLY_BUCKETS, seconds)] += 1
        self.latency_sum[mtype] += seconds

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "roost_dhcp_packets_received", "DHCP requests received", labels=["type"]
        )
        sent = CounterMetricFamily("roost_dhcp_replies_sent", "DHCP replies sent", labels=["type"])
        for t, name in TYPE_NAMES.items():
            received.add_metric([name], self.received[t])
            sent.add_metric([name], self.sent[t])
        dropped = CounterMetricFamily(
            "roost_dhcp_packets_dropped",
            "requests dropped: malformed, unanswered (ignored), failed to send, or errors",
            labels=["reason"],
        )
        for reason, n in sorted(self.dropped.items()):
            dropped.add_metric([reason], n)
        latency = HistogramMetricFamily(
            "roost_dhcp_reply_seconds",
            "time from receiving a request to sending its reply (ACKs include the lease commit)",
            labels=["type"],
        )
        for t, name in TYPE_NAMES.items():
            counts, total, cumulative = self.latency[t], 0, []
            for bound, n in zip((*map(str, REPLY_BUCKETS), "+Inf"), counts, strict=True):
                total += n
                cumulative.append((bound, float(total)))
            latency.add_metric([name], cumulative, self.latency_sum[t])
        yield from (received, sent, dropped, latency)


PACKETS = PacketStats()
REGISTRY.register(PACKETS)

COMMIT_SECONDS = Histogram(
    "roost_dhcp_lease_commit_seconds",
    "time to store one batch of leases (group commit)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
COMMIT_BATCH = Histogram(
    "roost_dhcp_lease_commit_batch",
    "leases per group commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
LEASES = Gauge("roost_dhcp_leases", "leases in memory by state", ["state"])

# router advertisements (roost.dhcp.ra): a few packets a minute, so plain prometheus counters
RA_SOLICITATIONS = Counter(
    "roost_dhcp_ra_solicitations_received", "valid IPv6 router solicitations received"
)
RA_SENT = Counter(
    "roost_dhcp_ra_advertisements_sent",
    "router advertisements sent: answering solicitations, or periodic",
    ["reason"],
)
RA_DROPPED = Counter(
    "roost_dhcp_ra_dropped",
    "ICMPv6 packets dropped (malformed, hop limit not 255) and advertisements not sent",
    ["reason"],
)
