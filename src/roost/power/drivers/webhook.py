"""Power through plain HTTP calls: smart plugs, PDUs and home-made relays for BMC-less machines.

Each action is one configurable request (method, URL, body, headers; secret headers and
HTTP Basic credentials are declared secret so they never show). Status is read from the
response of ``status_url`` either by a JSON Pointer (RFC 6901) into a JSON body or by a
regular expression over the text (its first group, or the whole match), and the value is
compared, case-insensitively, with the comma-separated ``status_on``/``status_off`` words.
Without a status call the driver cannot verify, so the base class sends the command once and
reports ``unknown``. Reading the status is a pure function (``parse_status``) so it is tested
without a server. HTTP 401/403 and other 4xx answers are fatal (credentials or URL are wrong);
timeouts, connection errors, 408, 429 and 5xx are retryable.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import httpx

from roost.power.base import BootDevice, PowerDriver, PowerState, RetryPolicy
from roost.power.errors import FatalError, RetryableError, UnsupportedError
from roost.power.spec import SettingSpec

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RETRYABLE_STATUS = frozenset({408, 425, 429})


class PointerError(ValueError):
    """The JSON Pointer does not resolve in the document."""


def resolve_pointer(document: Any, pointer: str) -> Any:
    """Resolve an RFC 6901 JSON Pointer (``""`` is the whole document)."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise PointerError(f"JSON pointer {pointer!r} must start with '/' (RFC 6901 §3)")
    node = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")  # RFC 6901 §4: ~1 first, then ~0
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PointerError(f"JSON pointer {pointer!r}: no {token!r} in the response")
    return node


def _as_word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _words(text: str) -> set[str]:
    return {w.strip().lower() for w in text.split(",") if w.strip()}


def parse_status(
    body: str, *, pointer: str | None, regex: str | None, on: str, off: str
) -> PowerState:
    """Read the power state from a status response body."""
    if pointer is not None:
        try:
            value = _as_word(resolve_pointer(json.loads(body), pointer))
        except (ValueError, PointerError):
            return PowerState.UNKNOWN
    elif regex is not None:
        match = re.search(regex, body)
        if match is None:
            return PowerState.UNKNOWN
        value = match.group(1) if match.groups() else match.group(0)
    else:
        value = body.strip()
    word = value.strip().lower()
    if word in _words(on):
        return PowerState.ON
    if word in _words(off):
        return PowerState.OFF
    return PowerState.UNKNOWN


def _request_specs(action: str, required: bool) -> tuple[SettingSpec, ...]:
    return (
        SettingSpec(
            f"{action}_url", str, required=required, target=True, help=f"URL called to {action}"
        ),
        SettingSpec(
            f"{action}_method",
            str,
            default="GET" if action == "status" else "POST",
            choices=METHODS,
            help=f"HTTP method of the {action} call",
        ),
        SettingSpec(f"{action}_body", str, help=f"request body of the {action} call"),
    )


class WebhookDriver(PowerDriver):
    name = "webhook"
    SETTINGS = (
        *_request_specs("on", True),
        *_request_specs("off", True),
        *_request_specs("cycle", False),
        *_request_specs("status", False),
        *_request_specs("pxe", False),
        *_request_specs("disk", False),
        SettingSpec(
            "content_type", str, default="application/json", help="Content-Type of request bodies"
        ),
        SettingSpec("headers", dict, help="extra request headers"),
        SettingSpec(
            "secret_headers",
            dict,
            secret=True,
            help="request headers that carry credentials (e.g. Authorization)",
        ),
        SettingSpec("username", str, help="HTTP Basic user name"),
        SettingSpec("password", str, secret=True, help="HTTP Basic password"),
        SettingSpec(
            "status_pointer",
            str,
            help="JSON Pointer (RFC 6901) to the state in the status response",
        ),
        SettingSpec(
            "status_regex",
            str,
            help="regular expression over the status response; first group is the state",
        ),
        SettingSpec(
            "status_on", str, default="on,true,1", help="comma-separated values that mean on"
        ),
        SettingSpec(
            "status_off", str, default="off,false,0", help="comma-separated values that mean off"
        ),
        SettingSpec("verify_tls", bool, default=True, help="check the server's TLS certificate"),
        SettingSpec("timeout", float, default=10.0, help="seconds per request"),
    )
    RETRY: ClassVar[RetryPolicy] = RetryPolicy(attempts=3, verify_timeout=20, poll_interval=1)

    def __init__(self, settings: Any, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(settings, retry=retry)
        if self.settings["status_regex"] is not None:
            try:
                re.compile(self.settings["status_regex"])
            except re.error as exc:
                from roost.errors import Invalid

                raise Invalid(f"power setting 'status_regex' is not a valid regex: {exc}") from exc

    def _can_verify(self) -> bool:
        return self.settings["status_url"] is not None

    async def _request(self, action: str) -> httpx.Response:
        s = self.settings
        url = s[f"{action}_url"]
        headers = {**(s["headers"] or {}), **(s["secret_headers"] or {})}
        body = s[f"{action}_body"]
        if body is not None:
            headers.setdefault("Content-Type", s["content_type"])
        auth = (s["username"] or "", s["password"] or "") if s["username"] else None
        try:
            async with httpx.AsyncClient(verify=s["verify_tls"], timeout=s["timeout"]) as client:
                r = await client.request(
                    s[f"{action}_method"], url, headers=headers, content=body, auth=auth
                )
        except httpx.TransportError as exc:
            raise RetryableError(f"webhook {action} {url}: {type(exc).__name__}: {exc}") from exc
        if r.is_success:
            return r
        what = f"webhook {action} {url}: HTTP {r.status_code} {r.reason_phrase}"
        if r.status_code >= 500 or r.status_code in RETRYABLE_STATUS:
            raise RetryableError(what)
        if r.status_code in (401, 403):
            raise FatalError(f"{what}: credentials refused")
        raise FatalError(what)

    async def _on(self) -> None:
        await self._request("on")

    async def _off(self) -> None:
        await self._request("off")

    async def _cycle(self) -> None:
        if self.settings["cycle_url"] is None:
            await super()._cycle()
        else:
            await self._request("cycle")

    async def _status(self) -> PowerState:
        if self.settings["status_url"] is None:
            return PowerState.UNKNOWN
        s = self.settings
        r = await self._request("status")
        return parse_status(
            r.text,
            pointer=s["status_pointer"],
            regex=s["status_regex"],
            on=s["status_on"],
            off=s["status_off"],
        )

    async def _set_boot_device(self, device: BootDevice) -> None:
        if self.settings[f"{device}_url"] is None:
            raise UnsupportedError(f"webhook: no {device}_url set, cannot select {device} boot")
        await self._request(str(device))
