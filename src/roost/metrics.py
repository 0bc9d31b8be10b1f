"""Prometheus metrics shared across Roost; each capability defines its own beside its code."""

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "roost_http_requests_total", "API requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram("roost_http_request_seconds", "API request latency", ["method", "route"])
