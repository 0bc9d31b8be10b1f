"""Caps on what anonymous boot requests may create (enrollment tokens, nodes).

Each kind has a token bucket (``enroll.anonymous_*_burst`` at once, refilled at
``enroll.anonymous_*_per_minute``). A refusal counts in ``roost_enroll_anonymous_limited_total``
and publishes ``enroll.limit.reached`` — at most one every 10 seconds per kind, carrying how
many were refused since the last one — so a flood of random MACs is visible without the
events themselves becoming the flood.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter

from roost.events import EventBus

LIMITED = Counter(
    "roost_enroll_anonymous_limited_total",
    "Creations for anonymous boot requests refused by the enroll.anonymous_* limits",
    ["what"],
)
LIMIT_REACHED = "enroll.limit.reached"
EVENT_EVERY = 10.0


class Bucket:
    def __init__(
        self, burst: int, per_minute: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst, self.rate, self.clock = burst, per_minute / 60.0, clock
        self.level, self.at = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


class AnonymousLimit:
    """One kind of anonymous creation (``tokens`` or ``nodes``) under its bucket."""

    def __init__(
        self,
        what: str,
        burst: int,
        per_minute: float,
        bus: EventBus,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.burst, self.per_minute = what, burst, per_minute
        self.bucket = Bucket(burst, per_minute, clock)
        self.bus, self.clock = bus, clock
        self.refused = 0
        self._unreported = 0
        self._last_event = -EVENT_EVERY

    def allow(self, mac: str, site: str | None) -> bool:
        if self.bucket.take():
            return True
        LIMITED.labels(self.what).inc()
        self.refused += 1
        self._unreported += 1
        now = self.clock()
        if now - self._last_event >= EVENT_EVERY:
            self._last_event = now
            data = {
                "what": self.what,
                "mac": mac,
                "refused": self._unreported,
                "burst": self.burst,
                "per_minute": self.per_minute,
            }
            self._unreported = 0
            self.bus.emit(LIMIT_REACHED, mac, data, site=site)
        return False
