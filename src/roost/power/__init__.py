"""Power control: a driver interface, its retry-and-verify loop, and driver discovery.

Drivers are plugins in the entry-point group ``roost.power`` (``ipmi``, ``redfish``,
``webhook``, ``libcloud``, ``fake`` ship with Roost; ``wol`` comes from discovery). Like
Ironic, only the driver asked for is imported: pyghmi, sushy and libcloud stay unloaded until
a node uses them. See docs/power.md.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from roost.errors import Invalid
from roost.power.base import BootDevice, PowerAction, PowerDriver, PowerState, RetryPolicy
from roost.power.errors import FatalError, PowerError, RetryableError, UnsupportedError
from roost.power.spec import (
    CLIFlag,
    SettingSpec,
    cli_flags,
    describe,
    parse_cli_args,
    redact,
    validate_settings,
)

__all__ = [
    "BootDevice",
    "CLIFlag",
    "FatalError",
    "PowerAction",
    "PowerDriver",
    "PowerError",
    "PowerState",
    "RetryPolicy",
    "RetryableError",
    "SettingSpec",
    "UnsupportedError",
    "available_drivers",
    "cli_flags",
    "describe",
    "load_driver",
    "parse_cli_args",
    "redact",
    "validate_settings",
]

GROUP = "roost.power"


def available_drivers() -> list[str]:
    """Names of the installed power drivers, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_driver(name: str) -> type[PowerDriver]:
    """Import and return the driver class registered as ``name``."""
    found = entry_points(group=GROUP, name=name)
    if not found:
        raise Invalid(f"unknown power driver {name!r}; installed: {', '.join(available_drivers())}")
    cls = next(iter(found)).load()
    if not (isinstance(cls, type) and issubclass(cls, PowerDriver)):
        raise Invalid(f"power driver {name!r} does not provide a PowerDriver class")
    return cls
