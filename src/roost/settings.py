"""The one typed settings model of Roost.

Settings come, highest precedence first, from CLI flags (passed as overrides), environment
variables ``ROOST_<SECTION>__<KEY>``, the TOML file named by ``--config`` or ``ROOST_CONFIG``,
and the defaults below. Each service owns one section; a later capability adds its section
here and nothing else. Settings are validated once at start-up and passed down: nothing deep
inside Roost reads the environment.
"""

from __future__ import annotations

import json
import os
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from roost.errors import ConfigError

DEFAULT_DATA_DIR = Path("/var/lib/roost")

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("roost_config_file", default=None)


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, so typos are caught."""

    model_config = ConfigDict(extra="forbid")


class APISettings(Section):
    host: str = "127.0.0.1"
    """Address the API and web UI listen on; loopback unless the operator opens it."""
    port: int = Field(default=8440, ge=0, le=65535)
    """TCP port of the API (0 picks a free one, for tests)."""
    public_url: str | None = None
    """URL that clients and nodes use to reach the API when it differs from host:port."""
    max_body_size: int = Field(default=2**20, ge=1024)
    """Largest request body in bytes (413 past it, before parsing). Boot-file uploads are
    streamed to disk and limited by ``boot.max_file_size`` instead."""


class DatabaseSettings(Section):
    url: str | None = None
    """SQLAlchemy URL; empty means SQLite ``roost.db`` in the data directory.
    PostgreSQL: ``postgresql+asyncpg://user:password@host/db``."""
    echo: bool = False


class EventSettings(Section):
    retention_days: float = Field(default=14.0, gt=0)
    """Events older than this are deleted by the retention sweep."""
    max_rows: int = Field(default=1_000_000, ge=1000)
    """Upper bound on stored events; the oldest go first."""
    subscriber_queue: int = Field(default=10_000, ge=10)
    """Events buffered per live subscriber before it is cut off as too slow."""


class LogSettings(Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class BootSettings(Section):
    """The HTTP boot server (boot files, per-node scripts, cloud-init, callbacks)."""

    enabled: bool = False
    """Serve boot files and per-node scripts; off unless the operator turns it on."""
    host: str = "0.0.0.0"
    """Address the HTTP boot server listens on (nodes must reach it; usually the boot LAN)."""
    http_port: int = Field(default=8442, ge=0, le=65535)
    """TCP port of the HTTP boot server, separate from the API. iPXE scripts are at
    ``/boot/<mac>.ipxe`` and boot files at ``/files/<name>`` on it."""
    public_url: str | None = None
    """Base URL nodes use to reach the boot server (``http://10.0.0.1:8442``); empty means
    the ``Host`` header of each request, which is the address the node itself used."""
    default_profile: str = Field(default="local", min_length=1, max_length=64)
    """Profile for a node no rule matches; ``local`` boots from disk, which harms nothing."""
    max_connections: int = Field(default=1024, ge=1)
    """Concurrent HTTP connections; past it new ones get ``503`` and are closed."""
    idle_timeout: float = Field(default=30.0, gt=0)
    """Seconds a connection may sit idle (between requests or with a stalled reader)."""
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds a client has to send a complete request head, counted from the connection's
    accept (or, on keep-alive, the request's first byte) and not restarted by each byte."""
    max_connections_per_client: int = Field(default=16, ge=1)
    """Concurrent connections from one client address; past it new ones get ``503``."""
    max_file_size: int = Field(default=16 * 2**30, ge=1)
    """Largest boot file the store accepts, in bytes."""
    transfer_threads: int = Field(default=128, ge=0, le=4096)
    """Threads that carry file bodies (``sendfile`` in a thread per transfer, so transfers
    use every core and are woken by the kernel directly); past this many, transfers wait for
    a free thread. 0: every transfer on the event loop."""
    http_root: Path | None = None
    """A read-only directory tree served at the root of the URL space (``/boot.ipxe``,
    ``/images/vmlinuz``), as the nginx of an existing PXE setup served it; Roost's own paths
    (``/files/``, ``/boot/``, ...) come first. The same rules as TFTP's root: no ``..``, no
    symlink out of the tree, regular files only. Empty: none."""
    access_log: Path | None = None
    """Append one Common Log Format line per response to this file (with the query string;
    tokens masked), beside the ``boot.http.fetch`` events. Empty: no log."""
    import_ipxe: bool = True
    """Import the iPXE binaries of Debian's ``ipxe`` package into the store at start."""
    ipxe_dir: Path = Path("/usr/lib/ipxe")
    """Where Debian's ``ipxe`` package puts ``undionly.kpxe``, ``ipxe.efi``, ``snponly.efi``."""
    render_workers: int = Field(default=2, ge=0, le=64)
    """Worker processes that render profile templates, off the event loop; a render waits at
    most ``render_timeout`` for a free one (then ``503``). 0: render in a thread of the server
    (the sandbox and output limits hold, but a runaway loop keeps that thread busy)."""
    render_timeout: float = Field(default=2.0, gt=0, le=60)
    """Seconds one document may take to render; past it the worker is killed and replaced and
    the client gets ``500``."""
    render_max_output: int = Field(default=2**20, ge=1024, le=64 * 2**20)
    """Characters one rendered document may have; a longer one fails (``500``)."""


class DHCPSettings(Section):
    """The DHCP server. It is off until told which interfaces to serve: Roost never answers
    DHCP on an interface nobody named."""

    interfaces: Annotated[list[str], NoDecode] = []
    """Interfaces to serve (bound with SO_BINDTODEVICE); empty means the server is off.
    In the environment: ``ROOST_DHCP__INTERFACES='["eth1"]'`` or ``eth1,eth2``."""
    proxy: bool = False
    """ProxyDHCP: answer only PXE clients, with boot information and no address (ports 67
    and 4011), beside another DHCP server that hands out the addresses."""
    authoritative: bool = True
    """NAK requests for addresses this server knows are wrong (RFC 2131 §4.3.2)."""
    offer_hold: float = Field(default=30.0, gt=0, le=3600)
    """Seconds an offered address stays reserved for the client it was offered to."""
    decline_hold: float = Field(default=86400.0, ge=0)
    """Seconds a declined address (in use by someone else) stays out of the pool."""
    probe: bool = False
    """Ping a new address before offering it and skip it when something answers."""
    probe_timeout: float = Field(default=0.3, gt=0, le=5)
    """Seconds to wait for an answer to that ping."""
    sweep_interval: float = Field(default=10.0, gt=0)
    """Seconds between expiry sweeps of the lease table."""
    events_offered: bool = True
    """Publish ``dhcp.lease.offered`` for every OFFER (busy networks may turn this off)."""
    ipxe_script_url: str | None = Field(
        default=None, max_length=255, pattern=r"^(https?|tftp)://\S+$"
    )
    """The URL iPXE clients are sent, unless their subnet, tag or reservation names another;
    ``${mac}``, ``${mac:hexhyp}`` and ``${next-server}`` are filled in (other ``${...}`` are
    iPXE's to expand). Empty: Roost's own ``http://<server>:<boot.http_port>/boot/<mac>.ipxe``."""
    match_client_id: bool = True
    """Treat a client identifier of type 1 equal to the hardware address (``01:<mac>``, as iPXE
    and Linux send) as no client identifier, so the firmware, iPXE and the OS of one machine
    share one lease. Off: every distinct client identifier is a client of its own."""
    router_advertisements: Literal["auto"] | bool = "auto"
    """Send IPv6 router advertisements on the served interfaces (RFC 4861), saying there is
    no IPv6 router here unless ``ra_router_lifetime`` says otherwise, so iPXE and Linux stop
    waiting for one. ``auto``: on, except in proxy mode (the network has its own routers)."""
    ra_router_lifetime: int = Field(default=0, ge=0, le=9000)
    """Router lifetime advertised, in seconds: 0 (never a default router) or at least
    ``ra_max_interval``."""
    ra_prefixes: Annotated[list[IPv6Network], NoDecode] = []
    """Prefixes advertised on-link and for SLAAC (a /64 each for SLAAC); none by default."""
    ra_mtu: int = Field(default=0, ge=0, le=65535)
    """Link MTU advertised (0: no MTU option; otherwise at least 1280)."""
    ra_max_interval: float = Field(default=600.0, ge=4, le=1800)
    """Most seconds between unsolicited advertisements; the least is a third of it."""

    @field_validator("interfaces", "ra_prefixes", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v.lstrip().startswith("["):
                return json.loads(v)
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @model_validator(mode="after")
    def _router_advertisement_limits(self) -> DHCPSettings:
        # RFC 4861 §6.2.1: AdvDefaultLifetime is 0 or MaxRtrAdvInterval..9000; LinkMTU ≥ 1280
        if 0 < self.ra_router_lifetime < self.ra_max_interval:
            raise ValueError("dhcp.ra_router_lifetime must be 0 or at least dhcp.ra_max_interval")
        if 0 < self.ra_mtu < 1280:
            raise ValueError("dhcp.ra_mtu must be 0 (none) or at least 1280")
        return self

    @property
    def ra_enabled(self) -> bool:
        """Whether router advertisements are on (``auto``: unless in proxy mode)."""
        if self.router_advertisements == "auto":
            return not self.proxy
        return self.router_advertisements


class TFTPSettings(Section):
    """The TFTP server for firmware PXE clients (read-only; see docs/tftp.md)."""

    enabled: bool = False
    """Serve TFTP. Off by default: port 69 is bound only when asked for."""
    host: str = "0.0.0.0"
    """IP address to listen on; the wildcard answers each client from the address it asked."""
    port: int = Field(default=69, ge=0, le=65535)
    """UDP port of the TFTP server (0 picks a free one, for tests)."""
    root: Path | None = None
    """Directory served; empty means ``<data_dir>/tftp``."""
    max_transfers: int = Field(default=1000, ge=1, le=100_000)
    """Transfers at once; requests beyond it get a TFTP error saying the server is busy."""
    timeout: float = Field(default=1.0, gt=0, le=255)
    """Seconds before a DATA window is sent again, unless the client asks otherwise (RFC 2349)."""
    retries: int = Field(default=5, ge=0, le=100)
    """Retransmissions without progress before a transfer is abandoned."""
    max_blksize: int = Field(default=1468, ge=8, le=65464)
    """Largest block size granted (RFC 2348). 1468 fills a 1500-byte Ethernet frame; larger
    blocks are IP-fragmented, which some networks drop."""
    max_windowsize: int = Field(default=32, ge=1, le=65535)
    """Largest window granted (RFC 7440): blocks sent before waiting for an ACK."""
    workers: Literal["auto"] | Annotated[int, Field(ge=0, le=64)] = "auto"
    """Worker processes that carry transfers (0: all in the server process). A boot storm
    of lockstep clients is bound by per-packet kernel work; workers spread it over cores,
    each transfer in a thread of its own. ``auto``: one per CPU the server may use when
    there is more than one (at most 64), 0 on a single CPU."""
    pin_workers: bool = True
    """Keep each worker on one CPU, round-robin over the CPUs the server may use. A worker's
    threads share one GIL; on two CPUs at once they only pass it back and forth."""
    busy_poll: int = Field(default=50, ge=0, le=10_000)
    """Microseconds a process carrying transfers keeps polling for the next ACK before it
    sleeps (0: never). Catches fast clients' answers without a wake-up; backs off by itself
    when clients answer slower than this, so slow firmware costs almost no CPU."""

    @property
    def worker_count(self) -> int:
        """``workers`` as a number, ``auto`` decided for the CPUs this process may use."""
        if self.workers == "auto":
            cpus = len(os.sched_getaffinity(0))
            return min(cpus, 64) if cpus > 1 else 0
        return self.workers


class NodeSettings(Section):
    """Inventory, certificate authority and enrollment (roost.inventory, roost.pki)."""

    auto_discover: bool = True
    """Create a ``discovered`` node for every unknown MAC seen in DHCP, discovery or boot events."""
    certificate_hours: float = Field(default=168.0, gt=0, le=24 * 366)
    """Lifetime of a node certificate; agents renew before it ends (default 7 days)."""
    enrollment_ttl_seconds: int = Field(default=3600, ge=60)
    """Default lifetime of a one-time enrollment token."""
    enrollment_max_ttl_seconds: int = Field(default=7 * 86400, ge=60)
    """Longest lifetime an enrollment token may be given."""
    signature_skew_seconds: int = Field(default=300, ge=5, le=3600)
    """How far a node's signed-request timestamp may be from the server clock."""


EnrollAuto = Literal["new", "off", "any"]


class EnrollSiteSettings(Section):
    """Per-site overrides of ``[enroll]`` (``[enroll.sites.<site>]``); unset keys inherit."""

    auto: EnrollAuto | None = None
    """See ``enroll.auto``."""
    boot_token_ttl: int | None = Field(default=None, ge=60, le=86400)
    """See ``enroll.boot_token_ttl``."""
    approve: bool | None = None
    """See ``enroll.approve``."""


@dataclass(frozen=True)
class EnrollPolicy:
    """``[enroll]`` with a site's overrides applied (:meth:`EnrollSettings.for_site`)."""

    auto: EnrollAuto
    boot_token_ttl: int
    approve: bool


class EnrollSettings(Section):
    """Which machines may enroll from an anonymous boot render (roost.pki.policy)."""

    auto: EnrollAuto = "new"
    """When a render of a public boot document mints an enrollment token: ``new`` only for a
    MAC without a node or whose node is ``discovered``/``broken``; ``off`` never; ``any``
    for every enrollable node (labs only: anyone on the boot LAN can take a node over).
    A node an operator recommissioned gets one under every setting."""
    boot_token_ttl: int = Field(default=900, ge=60, le=86400)
    """Seconds a minted token lives; renders of one MAC re-use it while it is valid."""
    approve: bool = False
    """Enrollments with a minted token wait in ``pending`` until an operator approves them
    (``roost node approve NODE``); tokens an operator created are approved by creation."""
    sites: dict[str, EnrollSiteSettings] = {}
    """Per-site overrides, e.g. ``[enroll.sites.east] auto = "off"``."""
    anonymous_token_burst: int = Field(default=20, ge=1, le=100_000)
    """Tokens anonymous renders may mint at once before the rate below applies."""
    anonymous_tokens_per_minute: float = Field(default=60.0, gt=0, le=1_000_000)
    """Sustained rate of tokens minted for anonymous renders; past it a render gets none."""
    anonymous_node_burst: int = Field(default=20, ge=1, le=100_000)
    """Nodes anonymous boot requests (``boot.*`` events) may create at once."""
    anonymous_nodes_per_minute: float = Field(default=60.0, gt=0, le=1_000_000)
    """Sustained rate of nodes created from boot requests; past it no node is created
    (DHCP and discovery events still create nodes)."""

    def for_site(self, site: str) -> EnrollPolicy:
        """The effective ``auto``, ``boot_token_ttl`` and ``approve`` of ``site``."""
        over = self.sites.get(site, EnrollSiteSettings())
        return EnrollPolicy(
            auto=over.auto or self.auto,
            boot_token_ttl=over.boot_token_ttl or self.boot_token_ttl,
            approve=self.approve if over.approve is None else over.approve,
        )


class DiscoverySettings(Section):
    """Discovery of this site's machines: ARP sweeps, passive sighting, port scans, Wake-on-LAN.

    Roost scans, probes and wakes only inside ``subnets``; any other target is refused.
    """

    subnets: list[IPv4Network] = []
    """The site's subnets (CIDR). Empty: discovery is off. Loopback only when listed."""
    interface: str | None = None
    """The interface on the site's LAN for ARP sweeps, passive sighting and raw wake packets."""
    netns: str | None = None
    """Run scans inside this named network namespace (``/run/netns/<name>``), e.g. in a lab."""
    passive: bool = True
    """Listen on ``interface`` for gratuitous ARP and DHCP requests and mark their senders seen."""
    arp_rate: float = Field(default=2000.0, gt=0, le=20_000)
    """ARP requests per second at most."""
    arp_attempts: int = Field(default=2, ge=1, le=10)
    """Requests per address before it counts as silent."""
    arp_timeout: float = Field(default=0.5, gt=0, le=30)
    """Seconds to wait for a reply before asking again."""
    tcp_concurrency: int = Field(default=2048, ge=1, le=16_384)
    """Upper bound of connects in flight (the adaptive window stays below it)."""
    tcp_rate: float = Field(default=100_000.0, gt=0, le=200_000)
    """New TCP connects per second at most."""
    tcp_timeout: float = Field(default=1.0, gt=0, le=60)
    tcp_retries: int = Field(default=1, ge=0, le=5)
    udp_rate: float = Field(default=500.0, gt=0, le=20_000)
    """UDP probes per second at most (hosts rate-limit their ICMP replies)."""
    udp_concurrency: int = Field(default=256, ge=1, le=4096)
    udp_timeout: float = Field(default=1.0, gt=0, le=60)
    udp_retries: int = Field(default=1, ge=0, le=5)
    max_targets: int = Field(default=65_536, ge=1)
    """Most addresses one scan may cover."""
    schedule_interval: float = Field(default=0.0, ge=0)
    """Seconds between automatic ARP sweeps of every subnet; 0 turns the schedule off."""
    gone_after: int = Field(default=2, ge=1, le=100)
    """A host is gone after this many completed sweeps of its subnet without an answer."""
    wol_port: int = Field(default=9, ge=1, le=65535)
    """UDP port for magic packets (9, discard; 7 is also common)."""
    wake_timeout: float = Field(default=120.0, gt=0, le=3600)
    """Seconds to wait for a woken host to answer before ``power.wake.timeout``."""


class Settings(BaseSettings):
    """Everything Roost can be told, in one place."""

    model_config = SettingsConfigDict(
        env_prefix="ROOST_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = DEFAULT_DATA_DIR
    site: str = "default"
    """Name of the site this process serves."""
    api: APISettings = APISettings()
    database: DatabaseSettings = DatabaseSettings()
    events: EventSettings = EventSettings()
    boot: BootSettings = BootSettings()
    dhcp: DHCPSettings = DHCPSettings()
    tftp: TFTPSettings = TFTPSettings()
    nodes: NodeSettings = NodeSettings()
    enroll: EnrollSettings = EnrollSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TOMLSource(settings_cls, _CONFIG_FILE.get()))

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'roost.db'}"


class _TOMLSource(PydanticBaseSettingsSource):
    """Reads the TOML file; missing file means no settings from it."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                with path.open("rb") as f:
                    self._data = tomllib.load(f)
            except FileNotFoundError as exc:
                raise ConfigError(f"{path}: no such settings file") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _set_nested(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the effective settings; raise :class:`ConfigError` naming the bad key.

    ``overrides`` maps dotted keys (``api.port``) to values from CLI flags; ``None`` values are
    ignored so unset flags do not mask the file or the environment.
    """
    if config_file is None and os.environ.get("ROOST_CONFIG"):
        config_file = Path(os.environ["ROOST_CONFIG"])
    init: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_nested(init, key, value)
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from None
    finally:
        _CONFIG_FILE.reset(token)


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    where = f"{config_file}: " if config_file else ""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        given = err.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
        lines.append(f"{where}{key}: {msg}{shown}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with every secret replaced by ``***``."""
    from sqlalchemy.engine import make_url

    data = settings.model_dump(mode="json")
    if settings.database.url:
        data["database"]["url"] = make_url(settings.database.url).render_as_string(
            hide_password=True
        )
    return data
