"""When to send the next router advertisement on one interface (RFC 4861 §6.2.4, §6.2.6),
with no I/O: time and randomness are passed in.

Unsolicited advertisements go out at a random interval between the minimum and maximum, the
first few (MAX_INITIAL_RTR_ADVERTISEMENTS) no more than 16 s apart. A solicitation brings the
next advertisement forward to a random moment within 0.5 s, but never sooner than 3 s after the
previous multicast one: the rate limit the RFC allows, which also folds a storm of solicitations
into one advertisement every 3 s.
"""

from __future__ import annotations

import random

MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MIN_DELAY_BETWEEN_RAS = 3.0
MAX_RA_DELAY_TIME = 0.5


class Schedule:
    def __init__(
        self, min_interval: float, max_interval: float, now: float, rng: random.Random
    ) -> None:
        self.min_interval, self.max_interval, self.rng = min_interval, max_interval, rng
        self.initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS
        self.last_sent = float("-inf")
        self.next_at = now  # the first one as soon as the interface advertises

    def solicited(self, now: float) -> None:
        """A valid router solicitation arrived at ``now``."""
        due = max(
            now + self.rng.uniform(0, MAX_RA_DELAY_TIME), self.last_sent + MIN_DELAY_BETWEEN_RAS
        )
        self.next_at = min(self.next_at, due)

    def sent(self, now: float) -> None:
        """A multicast advertisement went out at ``now``: schedule the next unsolicited one."""
        self.last_sent = now
        interval = self.rng.uniform(self.min_interval, self.max_interval)
        if self.initial_left > 0:
            self.initial_left -= 1
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        self.next_at = now + interval
