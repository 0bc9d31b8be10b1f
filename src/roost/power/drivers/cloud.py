"""Public-cloud machines through Apache Libcloud: Hetzner Cloud, DigitalOcean, AWS EC2, GCE.

A cloud server is powered like a BMC-managed machine (start, stop, hard reset, status), and
the driver adds what only clouds can do: ``list_nodes``, ``create_node`` and ``destroy_node``.
libcloud is synchronous, so every call runs in a worker thread; the libcloud driver object is
built lazily on first use (GCE fetches an OAuth2 token and the zone there) and then reused.
``endpoint`` points libcloud at another URL (an API-compatible cloud, or the tests' replay
server) by its own host/port/secure options. libcloud ``NodeState`` values translate through
``POWER_STATE_MAP``; HTTP 401/403 and other 4xx answers are fatal, the rest retryable.
"""

# libcloud leaves most of its API unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from roost.power.base import PowerDriver, PowerState, RetryPolicy
from roost.power.errors import FatalError, RetryableError
from roost.power.spec import SettingSpec

T = TypeVar("T")

PROVIDERS = ("hetzner", "digitalocean", "ec2", "gce")

POWER_STATE_MAP: dict[str, PowerState] = {
    "running": PowerState.ON,
    "stopped": PowerState.OFF,
    "suspended": PowerState.OFF,
    "paused": PowerState.OFF,
    # pending, starting, stopping, rebooting, terminated, error, unknown: not a settled state
}
"""libcloud ``NodeState`` values to ``PowerState``."""


@dataclass(frozen=True)
class CloudNode:
    """A cloud server as Roost sees it."""

    id: str
    name: str
    state: PowerState
    public_ips: list[str] = field(default_factory=list)
    private_ips: list[str] = field(default_factory=list)
    native_state: str = ""


class LibcloudDriver(PowerDriver):
    name = "libcloud"
    SETTINGS = (
        SettingSpec(
            "provider", str, required=True, choices=PROVIDERS, target=True, help="which cloud"
        ),
        SettingSpec(
            "key",
            str,
            required=True,
            secret=True,
            help="API token (Hetzner, DigitalOcean), access key id (EC2) or "
            "service-account e-mail (GCE)",
        ),
        SettingSpec(
            "secret",
            str,
            secret=True,
            help="secret access key (EC2) or service-account private key, PEM or JSON (GCE)",
        ),
        SettingSpec("region", str, help="EC2 region or GCE zone"),
        SettingSpec("project", str, help="GCE project id"),
        SettingSpec(
            "node_id",
            str,
            help="the server: EC2 instance id, droplet id, Hetzner server id or GCE instance name",
        ),
        SettingSpec(
            "endpoint",
            str,
            target=True,
            help="API base URL instead of the provider's (compatible clouds, tests)",
        ),
    )
    RETRY: ClassVar[RetryPolicy] = RetryPolicy(attempts=3, verify_timeout=300, poll_interval=5)

    def __init__(self, settings: Any, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(settings, retry=retry)
        self._driver: Any = None
        self._lock = threading.Lock()

    # -- libcloud plumbing ---------------------------------------------------------------

    def _connect(self) -> Any:
        s = self.settings
        options: dict[str, Any] = {}
        if s["endpoint"]:
            url = urlsplit(s["endpoint"])
            options = {"host": url.hostname, "secure": url.scheme == "https"}
            if url.port:
                options["port"] = url.port
        provider = s["provider"]
        if provider == "hetzner":
            from roost.power.drivers.hetzner import HetznerNodeDriver

            return HetznerNodeDriver(s["key"], **options)
        from libcloud.compute.base import NodeDriver
        from libcloud.compute.providers import Provider, get_driver

        if provider == "digitalocean":
            from libcloud.compute.drivers.digitalocean import DigitalOcean_v2_NodeDriver

            class DigitalOcean(DigitalOcean_v2_NodeDriver):
                # libcloud 3.9's DigitalOcean driver forwards host/port/secure to
                # object.__new__ (which refuses them) and then drops them in __init__;
                # construct it as a plain NodeDriver so the endpoint is honoured.
                def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                    return object.__new__(cls)

                def __init__(self, key: str, **kwargs: Any) -> None:
                    self.ex_per_page = 200
                    NodeDriver.__init__(self, key, **kwargs)

            return DigitalOcean(s["key"], **options)
        if provider == "ec2":
            # Signature Version 4 everywhere: libcloud's table still lists version 2 for some
            # regions, which AWS no longer accepts for new accounts.
            return get_driver(Provider.EC2)(
                s["key"],
                s["secret"],
                region=s["region"] or "us-east-1",
                signature_version="4",
                **options,
            )
        from libcloud.compute.drivers.gce import GCEConnection, GCENodeDriver

        class GCEEndpointConnection(GCEConnection):
            # libcloud 3.9 hands host and port to the connection positionally, where
            # GCEConnection expects auth_type: take them by position and pass them on by name
            # (they reach the OAuth2 token connection too).
            def __init__(
                self,
                user_id: str,
                key: str,
                secure: bool,
                host: str | None = None,
                port: int | None = None,
                **kwargs: Any,
            ) -> None:
                super().__init__(user_id, key, secure, host=host, port=port, **kwargs)

        class GCE(GCENodeDriver):
            connectionCls = GCEEndpointConnection  # type: ignore[assignment]

        # Service-account login; the token is not cached on disk (devnull), so no credential
        # lands in a home directory.
        return GCE(
            s["key"],
            s["secret"],
            project=s["project"],
            datacenter=s["region"],
            auth_type="SA",
            credential_file=os.devnull,
            **options,
        )

    def _connect_checked(self) -> Any:
        driver = self._connect()
        endpoint = self.settings["endpoint"]
        if endpoint and driver.connection.host != urlsplit(endpoint).hostname:
            # Never let a driver that ignores the override talk to the real cloud.
            raise FatalError(
                f"libcloud: the {self.settings['provider']} driver ignored endpoint {endpoint}"
            )
        return driver

    def _call_sync(self, fn: Callable[[Any], T]) -> T:
        from libcloud.common.exceptions import BaseHTTPError
        from libcloud.common.google import GoogleAuthError
        from libcloud.common.types import InvalidCredsError, LibcloudError

        where = f"{self.settings['provider']} API"
        with self._lock:
            try:
                if self._driver is None:
                    self._driver = self._connect_checked()
                return fn(self._driver)
            except (InvalidCredsError, GoogleAuthError) as exc:
                raise FatalError(f"{where}: credentials refused: {exc}") from exc
            except (BaseHTTPError, LibcloudError) as exc:
                code = getattr(exc, "code", None) or getattr(exc, "http_code", None) or 0
                if 400 <= int(code) < 500 and int(code) not in (408, 429):
                    raise FatalError(f"{where}: HTTP {code}: {exc}") from exc
                raise RetryableError(f"{where}: {exc}") from exc
            except (ValueError, KeyError, TypeError) as exc:
                # libcloud refuses bad regions, zones and keys this way while connecting.
                raise FatalError(f"{where}: {type(exc).__name__}: {exc}") from exc
            except OSError as exc:
                raise RetryableError(f"{where}: {exc}") from exc

    async def _call(self, fn: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._call_sync, fn)

    def _node_id(self) -> str:
        node_id = self.settings["node_id"]
        if not node_id:
            raise FatalError("libcloud: power setting 'node_id' is not set for this node")
        return str(node_id)

    def _find(self, driver: Any) -> Any:
        """The libcloud ``Node`` of ``node_id``, fetched the cheapest way the provider has."""
        node_id = self._node_id()
        provider = self.settings["provider"]
        if provider == "hetzner":
            return driver.ex_get_node(node_id)
        if provider == "digitalocean":
            return driver.ex_get_node_details(node_id)
        if provider == "ec2":
            nodes = driver.list_nodes(ex_node_ids=[node_id])
        else:
            return driver.ex_get_node(node_id)
        if not nodes:
            raise FatalError(f"libcloud: no {provider} server {node_id!r}")
        return nodes[0]

    @staticmethod
    def _to_cloud_node(node: Any) -> CloudNode:
        native = str(node.state)
        return CloudNode(
            id=str(node.id),
            name=str(node.name),
            state=POWER_STATE_MAP.get(native, PowerState.UNKNOWN),
            public_ips=list(node.public_ips or []),
            private_ips=list(node.private_ips or []),
            native_state=native,
        )

    # -- power primitives ----------------------------------------------------------------

    async def _on(self) -> None:
        def on(d: Any) -> None:
            node = self._find(d)
            if self.settings["provider"] == "digitalocean":
                d.ex_power_on_node(node)
            else:
                d.start_node(node)

        await self._call(on)

    async def _off(self) -> None:
        def off(d: Any) -> None:
            node = self._find(d)
            if self.settings["provider"] == "digitalocean":
                # power_off is DigitalOcean's hard off; libcloud only wraps graceful shutdown.
                d.connection.request(
                    f"/v2/droplets/{node.id}/actions", method="POST", data='{"type": "power_off"}'
                )
            else:
                d.stop_node(node)

        await self._call(off)

    async def _cycle(self) -> None:
        def cycle(d: Any) -> bool:
            node = self._find(d)
            if POWER_STATE_MAP.get(str(node.state)) != PowerState.ON:
                return False
            if self.settings["provider"] == "digitalocean":
                d.ex_hard_reboot(node)
            else:
                d.reboot_node(node)
            return True

        if not await self._call(cycle):
            await self._on()

    async def _status(self) -> PowerState:
        return (await self._call(lambda d: self._to_cloud_node(self._find(d)))).state

    # -- what only clouds do -------------------------------------------------------------

    async def list_nodes(self) -> list[CloudNode]:
        """Every server the credentials can see (in the region/zone, where that applies)."""
        return await self._call(lambda d: [self._to_cloud_node(n) for n in d.list_nodes()])

    async def create_node(
        self, name: str, size: str, image: str, location: str | None = None
    ) -> CloudNode:
        """Create a server; ``size``, ``image`` and ``location`` are the provider's ids
        (e.g. ``cx22``/``ubuntu-24.04``/``fsn1``, ``t3.micro``/``ami-…``). Not retried: a
        retry after a lost answer could create a second server."""
        from libcloud.compute.base import NodeImage, NodeLocation, NodeSize

        def create(d: Any) -> CloudNode:
            args: dict[str, Any] = {
                "name": name,
                "size": NodeSize(size, size, 0, 0, None, 0.0, driver=d),
                "image": NodeImage(image, image, driver=d),
            }
            if location is not None:
                args["location"] = NodeLocation(location, location, "", driver=d)
            return self._to_cloud_node(d.create_node(**args))

        return await self._call(create)

    async def destroy_node(self) -> None:
        """Delete the server named by ``node_id``, retrying only what is safe to retry."""
        await self._retrying(
            "destroy node", lambda: self._call(lambda d: d.destroy_node(self._find(d)))
        )
