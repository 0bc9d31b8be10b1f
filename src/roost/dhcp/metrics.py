"""Prometheus metrics of the DHCP server (served by the foundation's ``/metrics``)."""

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("roost_dhcp_packets_received_total", "DHCP requests received", ["type"])
SENT = Counter("roost_dhcp_replies_sent_total", "DHCP replies sent", ["type"])
DROPPED = Counter(
    "roost_dhcp_packets_dropped_total",
    "requests dropped: malformed, unanswered (ignored), failed to send, or errors",
    ["reason"],
)
REPLY_SECONDS = Histogram(
    "roost_dhcp_reply_seconds",
    "time from receiving a request to sending its reply (ACKs include the lease commit)",
    ["type"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
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
