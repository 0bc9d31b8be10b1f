"""The errors a power driver raises, split the way the retry loop needs them.

    RoostError
    └── PowerError             power control failed; the message says which node/BMC and why
        ├── RetryableError     may succeed if tried again: timeout, connection refused, 5xx, busy
        └── FatalError         will fail again until someone changes something: bad credentials,
            │                  bad settings, unknown system; never retried
            └── UnsupportedError  the driver (or the device behind it) cannot do this action

Drivers translate their library's exceptions into these at the edge, so that
``PowerDriver``'s template methods decide retries from the class alone (MAAS splits
power errors the same way). The API maps them to 502 problems: the failure is the managed
device's, not the caller's request.
"""

from __future__ import annotations

from roost.errors import RoostError


class PowerError(RoostError):
    status = 502
    title = "Power control failed"


class RetryableError(PowerError):
    title = "Power control failed (temporary)"


class FatalError(PowerError):
    title = "Power control failed (check the node's power settings)"


class UnsupportedError(FatalError):
    title = "Power action not supported by this driver"
