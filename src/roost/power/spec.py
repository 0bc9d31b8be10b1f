"""One declaration of a driver's settings drives validation, redaction and CLI flags.

Each driver lists ``SettingSpec`` entries in its ``SETTINGS`` class attribute (as MAAS power
drivers declare their parameters once). From that list alone: the API validates what an
operator sends (``validate_settings``: missing, unknown and mistyped keys are refused with a
message that names the key, and never echoes a secret), anything shown or logged goes through
``redact`` (secrets become ``"***"``), and the CLI builds ``--<name>`` options from
``cli_flags`` and turns the tokens it received back into settings with ``parse_cli_args``.
Supported types: ``str``, ``int``, ``float``, ``bool`` and ``dict`` (string to string, for
HTTP headers); ``dict`` flags repeat as ``--headers KEY=VALUE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from roost.errors import Invalid

if TYPE_CHECKING:
    from roost.power.base import PowerDriver

REDACTED = "***"
"""What a secret value becomes in ``redact`` output."""

TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean (true/false)",
    dict: "an object of string values",
}

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class SettingSpec:
    """One setting of a power driver."""

    name: str
    type: type
    required: bool = False
    secret: bool = False
    help: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    """Allowed values of a ``str`` setting; empty means any."""
    target: bool = False
    """Says where the driver sends its secrets (a host, a URL): changing it must not carry the
    stored secrets along to the new place (see roost.inventory.power.prepare)."""

    def __post_init__(self) -> None:
        if self.type not in TYPE_NAMES:
            raise TypeError(f"setting {self.name!r}: unsupported type {self.type!r}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class CLIFlag:
    """What the CLI needs to offer one ``--<name>`` option; ``multiple`` for dict settings."""

    flag: str
    key: str
    type: type
    required: bool
    secret: bool
    help: str
    default: Any
    multiple: bool


def _check_value(driver: str, spec: SettingSpec, value: Any) -> Any:
    shown = "(secret value hidden)" if spec.secret else repr(value)
    want = TYPE_NAMES[spec.type]
    problem = f"power setting {spec.name!r} of driver {driver!r} must be {want}, got {shown}"
    if spec.type is bool:
        if not isinstance(value, bool):
            raise Invalid(problem)
        return value
    if spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(problem)
        return value
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(problem)
        return float(value)
    if spec.type is dict:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise Invalid(problem)
        return dict(value)
    if not isinstance(value, str):
        raise Invalid(problem)
    if spec.choices and value not in spec.choices:
        raise Invalid(
            f"power setting {spec.name!r} of driver {driver!r} must be one of "
            f"{', '.join(spec.choices)}; got {shown}"
        )
    return value


def validate_settings(driver_cls: type[PowerDriver], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``raw`` checked against the driver's declaration, with defaults filled in.

    Raises ``roost.errors.Invalid`` naming the first offending key (unknown keys first, so a
    typo is reported as such rather than as the missing key it was meant to be).
    """
    specs = {s.name: s for s in driver_cls.SETTINGS}
    unknown = sorted(set(raw) - set(specs))
    if unknown:
        raise Invalid(
            f"unknown power setting {unknown[0]!r} for driver {driver_cls.name!r}; "
            f"known: {', '.join(specs) or '(none)'}"
        )
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        value = raw.get(name)
        if value is None or (value == "" and spec.required):
            if spec.required:
                raise Invalid(
                    f"power setting {name!r} is required by driver {driver_cls.name!r}"
                    + (f" ({spec.help})" if spec.help else "")
                )
            out[name] = spec.default
            continue
        out[name] = _check_value(driver_cls.name, spec, value)
    return out


def redact(driver_cls: type[PowerDriver], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``settings`` safe to show or log: every secret that is set becomes ``"***"``.

    Keys the driver does not declare are treated as secret too: redaction must not depend on
    the input having been validated first.
    """
    secret = {s.name: s.secret for s in driver_cls.SETTINGS}
    return {
        k: (REDACTED if secret.get(k, True) and v not in (None, "") else v)
        for k, v in settings.items()
    }


def cli_flags(driver_cls: type[PowerDriver]) -> list[CLIFlag]:
    """The ``--<name>`` options the CLI offers for this driver (underscores become dashes)."""
    return [
        CLIFlag(
            flag=s.flag,
            key=s.name,
            type=s.type,
            required=s.required,
            secret=s.secret,
            help=s.help + (f" [one of: {', '.join(s.choices)}]" if s.choices else ""),
            default=s.default,
            multiple=s.type is dict,
        )
        for s in driver_cls.SETTINGS
    ]


def _convert(driver: str, spec: SettingSpec, text: str) -> Any:
    if spec.type is str:
        return text
    if spec.type is bool:
        word = text.lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
    else:
        try:
            return spec.type(text)
        except ValueError:
            pass
    shown = "(secret value hidden)" if spec.secret else repr(text)
    raise Invalid(f"{spec.flag} of driver {driver!r} must be {TYPE_NAMES[spec.type]}, got {shown}")


def parse_cli_args(driver_cls: type[PowerDriver], args: Sequence[str]) -> dict[str, Any]:
    """Turn ``["--host", "10.0.0.5", "--port=623", "--headers", "X-A=b"]`` into raw settings.

    A ``bool`` flag given without a value means true. The result still goes through
    ``validate_settings`` (the API does that), so required keys are not checked here.
    """
    by_flag = {s.flag: s for s in driver_cls.SETTINGS}
    raw: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        flag, eq, inline = token.partition("=")
        spec = by_flag.get(flag)
        if spec is None:
            raise Invalid(
                f"unknown option {flag!r} for power driver {driver_cls.name!r}; "
                f"known: {', '.join(by_flag) or '(none)'}"
            )
        if eq:
            text: str | None = inline
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            i += 1
            text = args[i]
        else:
            text = None
        i += 1
        if text is None:
            if spec.type is not bool:
                raise Invalid(f"{flag} of power driver {driver_cls.name!r} needs a value")
            raw[spec.name] = True
        elif spec.type is dict:
            key, sep, value = text.partition("=")
            if not sep or not key:
                raise Invalid(f"{flag} takes KEY=VALUE, got {text if not spec.secret else '***'}")
            raw.setdefault(spec.name, {})[key] = value
        else:
            raw[spec.name] = _convert(driver_cls.name, spec, text)
    return raw


def describe(driver_cls: type[PowerDriver]) -> list[dict[str, Any]]:
    """The declaration as JSON (for an API listing of drivers or a form in the UI)."""
    return [
        {
            "name": s.name,
            "type": s.type.__name__,
            "required": s.required,
            "secret": s.secret,
            "help": s.help,
            "default": s.default,
            "choices": list(s.choices),
            "target": s.target,
        }
        for s in driver_cls.SETTINGS
    ]
