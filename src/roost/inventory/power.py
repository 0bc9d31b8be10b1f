"""The seam between the inventory and the power driver library (``roost.power``).

Everything the inventory needs from the library goes through the module object
:data:`library`: ``load_driver(name)`` → a driver class with ``SETTINGS`` (each spec with
``name``, ``type`` and ``secret``), ``validate_settings(cls, raw)`` → settings, and instances
with ``power_on``, ``power_off``, ``power_cycle``, ``power_status`` and ``set_boot_device``.
A driver whose own dependencies are missing is a precise 422, not a crash. The driver's
settings declaration decides which values are secret: those are sealed by
:mod:`roost.secrets` and shown as ``***``, never returned or logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

import roost.power as library
from roost.errors import Invalid, RoostError
from roost.inventory.models import NodeRow
from roost.secrets import REDACTED, SecretBox

log = logging.getLogger(__name__)

_PURPOSE = "roost.node.power"


class PowerAction(StrEnum):
    on = "on"
    off = "off"
    cycle = "cycle"
    status = "status"


class BootDevice(StrEnum):
    pxe = "pxe"
    disk = "disk"


class PowerActionFailed(RoostError):
    status = 502
    title = "Power action failed"


def driver_class(name: str) -> Any:
    try:
        return library.load_driver(name)
    except (LookupError, ImportError, RoostError) as exc:
        raise Invalid(f"power driver {name!r} is not installed ({exc})") from None


def available() -> list[str]:
    return list(library.available_drivers())


def declaration(driver: str) -> list[dict[str, Any]]:
    """A driver's settings as data, each with the flag it is on the command line."""
    specs = library.describe(driver_class(driver))
    return [{**s, "flag": "--" + s["name"].replace("_", "-")} for s in specs]


def settings_from_flags(driver: str, args: Sequence[str]) -> dict[str, Any]:
    """Driver-specific command-line flags (``--host 10.0.0.9 --port 623``) as raw settings,
    read by the driver's own declaration: each declared setting is a flag of ``roost node``."""
    return dict(library.parse_cli_args(driver_class(driver), list(args)))


def secret_names(cls: Any) -> set[str]:
    return {spec.name for spec in getattr(cls, "SETTINGS", ()) if spec.secret}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):  # headers: stored as the object they are, not as its repr
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _coerce(cls: Any, key: str, value: Any) -> Any:
    """Text from the CLI (``--power-setting port=623``) or CSV becomes the declared type; what
    does not convert is left for the driver's validation to refuse by name."""
    spec = next((s for s in getattr(cls, "SETTINGS", ()) if s.name == key), None)
    if spec is None or not isinstance(value, str) or spec.type is str:
        return value
    if spec.type is bool:
        word = value.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else value
    if spec.type in (int, float):
        try:
            return spec.type(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class SealedPower:
    driver: str
    plain: dict[str, Any]
    sealed: str | None


def target_names(cls: Any) -> set[str]:
    """The settings that say where the driver sends its secrets (host, URL, endpoint)."""
    return {spec.name for spec in getattr(cls, "SETTINGS", ()) if spec.target}


def prepare(box: SecretBox, node: NodeRow | None, driver: str, raw: dict[str, Any]) -> SealedPower:
    """Validate settings against the driver's declaration and split them into plain and sealed.

    For a node that already uses ``driver``, ``raw`` changes its stored settings: keys not
    given stay, ``null`` removes one, and a secret given as ``***`` (what the API shows) keeps
    the stored value, so an exported node re-imports without its secrets leaving the server.
    Secrets follow their target: a change of where they are sent (a ``target`` setting) is
    refused unless every stored secret is given again (or removed with ``null``) with it.
    """
    cls = driver_class(driver)
    secrets = secret_names(cls)
    same = node is not None and node.power_driver == driver
    merged = current_settings(box, node) if node is not None and same else {}
    for key, value in raw.items():
        if not (value == REDACTED and key in secrets):
            merged[key] = value
    merged = {k: _coerce(cls, k, v) for k, v in merged.items() if v is not None}
    validated = {k: _jsonable(v) for k, v in library.validate_settings(cls, merged).items()}
    if node is not None and same:
        _check_secrets_follow(cls, box, node, validated, raw)
    plain = {k: v for k, v in validated.items() if k not in secrets}
    hidden = {k: v for k, v in validated.items() if k in secrets and v is not None}
    return SealedPower(driver, plain, box.seal_json(hidden, _PURPOSE) if hidden else None)


def _check_secrets_follow(
    cls: Any, box: SecretBox, node: NodeRow, validated: dict[str, Any], raw: dict[str, Any]
) -> None:
    """Refuse to send stored secrets to a new place: an operator who may change a URL but
    not read a password could otherwise point the URL at a host of their own."""
    moved = sorted(k for k in target_names(cls) if validated.get(k) != node.power_settings.get(k))
    if not moved or not node.power_secrets:
        return
    stored = box.open_json(node.power_secrets, _PURPOSE)
    again = {k for k, v in raw.items() if v != REDACTED}
    missing = sorted(k for k in stored if k not in again)
    if missing:
        raise Invalid(
            f"power settings {', '.join(map(repr, moved))} change where the secrets are sent, "
            f"so the stored {', '.join(map(repr, missing))} must be given again in the same "
            "request (or null to remove them)"
        )


def apply(node: NodeRow, power: SealedPower | None) -> None:
    if power is None:
        node.power_driver, node.power_settings, node.power_secrets = None, {}, None
    else:
        node.power_driver, node.power_settings = power.driver, power.plain
        node.power_secrets = power.sealed
    node.power_state = None


def current_settings(box: SecretBox, node: NodeRow) -> dict[str, Any]:
    """The node's full settings, secrets opened: for the driver only, never for output."""
    opened = box.open_json(node.power_secrets, _PURPOSE) if node.power_secrets else {}
    return {**node.power_settings, **opened}


def shown(node: NodeRow) -> dict[str, Any]:
    """What the API and exports show: plain values, and ``***`` for every stored secret."""
    if not node.power_driver:
        return {}
    masked = dict(node.power_settings)
    if node.power_secrets:
        try:
            masked.update(dict.fromkeys(secret_names(driver_class(node.power_driver)), REDACTED))
        except Invalid:
            masked["secrets"] = REDACTED
    return masked


def instance(box: SecretBox, node: NodeRow) -> Any:
    if not node.power_driver:
        raise Invalid(
            f"node {node.id} has no power driver; set one with "
            "`roost node set NODE --power-driver NAME --power-setting KEY=VALUE`"
        )
    cls = driver_class(node.power_driver)
    return cls(library.validate_settings(cls, current_settings(box, node)))


async def act(driver: Any, action: PowerAction) -> str:
    """Run one action through the driver and return the power state it verified."""
    try:
        if action is PowerAction.on:
            state = await driver.power_on()
        elif action is PowerAction.off:
            state = await driver.power_off()
        elif action is PowerAction.cycle:
            state = await driver.power_cycle()
        else:
            state = await driver.power_status()
    except RoostError:
        raise
    except Exception as exc:
        log.warning("power %s failed: %s", action.value, type(exc).__name__)
        raise PowerActionFailed(f"power {action.value} failed: {exc}") from None
    return str(getattr(state, "value", state))


async def boot_device(driver: Any, device: BootDevice) -> None:
    wanted: Any = (
        library.BootDevice(device.value) if hasattr(library, "BootDevice") else device.value
    )
    try:
        await driver.set_boot_device(wanted)
    except RoostError:
        raise
    except Exception as exc:
        log.warning("setting boot device failed: %s", type(exc).__name__)
        raise PowerActionFailed(f"setting boot device {device.value} failed: {exc}") from None
