"""Roost's exception tree.

    RoostError
    ├── ConfigError        settings are invalid; the message names the key
    ├── NotFound           a named object does not exist
    ├── Conflict           the request contradicts stored state
    ├── Invalid            input is well-formed but not acceptable; the message says what to change
    └── Forbidden          the caller may not do this

The API turns each into an RFC 9457 problem with the matching status; the CLI prints the message.
"""


class RoostError(Exception):
    status = 500
    title = "Internal error"


class ConfigError(RoostError):
    status = 500
    title = "Invalid settings"


class NotFound(RoostError):
    status = 404
    title = "Not found"


class Conflict(RoostError):
    status = 409
    title = "Conflict"


class Invalid(RoostError):
    status = 422
    title = "Invalid input"


class Forbidden(RoostError):
    status = 403
    title = "Forbidden"
