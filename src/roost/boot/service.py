"""The ``boot`` service: the boot-file store, profiles, and the HTTP boot server, wired.

Start-up creates the store directories (removing crash leftovers), the per-node token secret,
imports the iPXE binaries of Debian's ``ipxe`` package into the store when they are missing,
and opens the HTTP boot server on ``boot.host:boot.http_port``. The pieces other capabilities
plug into are attributes: ``gate`` (the enrollment policy, :mod:`roost.boot.enrollment`) and
``lookup`` (see :mod:`roost.boot.documents`), and
:meth:`BootService.open_file` for the TFTP server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from roost.boot.access_log import AccessLog
from roost.boot.documents import Documents, Gate, NodeLookup, no_inventory
from roost.boot.enrollment import EnrollmentGate, enroller
from roost.boot.http11 import HTTPServer
from roost.boot.profiles import ProfileBook
from roost.boot.render_pool import InlineRenderer, Renderer, RenderPool
from roost.boot.server import BootHTTP, Enroller
from roost.boot.store import BootStore
from roost.boot.tokens import BootTokens
from roost.errors import ConfigError
from roost.service import Health, Runtime

log = logging.getLogger(__name__)

NodeSites = Callable[[Collection[str]], Awaitable[dict[str, str]]]
"""``sites(macs)``: the site of each of ``macs`` that belongs to a node."""

IPXE_FILES = {"undionly.kpxe": "bios", "ipxe.efi": "x86_64-efi", "snponly.efi": "x86_64-efi"}
"""Debian ``ipxe`` binaries imported as default boot files, with their architecture."""


def store_for(runtime: Runtime) -> BootStore:
    """The store of the running boot service, or one on the same directory and database."""
    svc = runtime.service("boot")
    if isinstance(svc, BootService):
        return svc.store
    s = runtime.settings
    return BootStore(s.data_dir, runtime.db, s.boot.max_file_size)


def tokens_for(runtime: Runtime) -> BootTokens:
    return BootTokens.load(runtime.settings.data_dir / "boot" / "secret")


class BootService:
    name = "boot"

    def __init__(
        self,
        runtime: Runtime,
        gate: Gate | None = None,
        lookup: NodeLookup | None = None,
        enroll: Enroller | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings.boot
        self.store = BootStore(runtime.settings.data_dir, runtime.db, self.settings.max_file_size)
        self.book = ProfileBook(runtime.db)
        self.gate = gate
        self.enroll = enroll
        self.lookup = lookup or node_lookup(runtime)
        self.http: HTTPServer | None = None
        self.address: tuple[str, int] | None = None
        self.documents: Documents | None = None
        self.renderer: RenderPool | None = None
        self._access_log: AccessLog | None = None

    async def start(self) -> None:
        await self.store.open()
        await self.import_ipxe(self.settings.ipxe_dir)
        boot_tokens = tokens_for(self.runtime)
        renderer: Renderer = InlineRenderer(self.settings.render_timeout)
        if self.settings.render_workers:
            self.renderer = RenderPool(self.settings.render_workers, self.settings.render_timeout)
            await self.renderer.start()
            renderer = self.renderer
        self.documents = Documents(
            self.book,
            boot_tokens,
            self.settings.default_profile,
            self.gate or EnrollmentGate(self.runtime, boot_tokens),
            lookup=self.lookup,
            site=self.runtime.settings.site,
            renderer=renderer,
            bus=self.runtime.bus,
            max_output=self.settings.render_max_output,
        )
        if self.settings.access_log is not None:
            try:
                self._access_log = AccessLog(self.settings.access_log)
            except OSError as exc:
                raise ConfigError(
                    f"boot.access_log: cannot open {self.settings.access_log}: {exc.strerror}"
                ) from None
        site = BootHTTP(
            self.store, self.documents, self.runtime.bus, self.settings.public_url, self.enroll,
            root=self.settings.http_root, access_log=self._access_log,
        )  # fmt: skip
        self.http = HTTPServer(
            site.handle,
            site.observe,
            max_connections=self.settings.max_connections,
            idle_timeout=self.settings.idle_timeout,
            header_timeout=self.settings.header_timeout,
            max_connections_per_client=self.settings.max_connections_per_client,
            pump_threads=self.settings.transfer_threads,
        )
        self.address = await self.http.start(self.settings.host, self.settings.http_port)
        log.info("HTTP boot server listening on %s:%d", *self.address)
        self._plug_into_tftp()

    def _http_base(self) -> str | None:
        """The boot server's URL when it is known without a request (for TFTP-served scripts)."""
        if self.settings.public_url:
            return self.settings.public_url
        host = self.settings.host
        if self.address is None or host in ("0.0.0.0", "::", ""):
            return None
        return f"http://{f'[{host}]' if ':' in host else host}:{self.address[1]}"

    def _plug_into_tftp(self) -> None:
        """Put the store (and rendered scripts) in front of the TFTP server's directory.

        Services start in name order, so ``boot`` runs this before ``tftp`` starts."""
        try:
            from roost.tftp.service import TFTPService
        except ImportError:  # a build without the TFTP capability
            return
        from roost.boot.tftp import BootResolver

        tftp = self.runtime.service("tftp")
        if isinstance(tftp, TFTPService):
            resolver = BootResolver(self.store, self.documents, self._http_base())
            tftp.chain.resolvers.insert(0, resolver)

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self._access_log is not None:
            self._access_log.close()
            self._access_log = None
        if self.renderer is not None:
            await self.renderer.stop()
            self.renderer = None

    def health(self) -> Health:
        if self.http is None or self.address is None:
            return Health(False, "HTTP boot server not running")
        return Health(True, f"{self.address[0]}:{self.address[1]}, {self.http.active} connections")

    async def import_ipxe(self, directory: Path) -> list[str]:
        """Store the Debian iPXE binaries the store lacks; return the names imported."""
        if not self.settings.import_ipxe:
            return []
        imported = []
        for name, arch in IPXE_FILES.items():
            path = directory / name
            if await self.store.get(name) is not None:
                continue
            if not path.is_file():
                log.warning(
                    "%s missing: install Debian's ipxe package to boot %s nodes", path, arch
                )
                continue
            await self.store.put_path(name, path, arch=arch)
            imported.append(name)
        if imported:
            log.info("imported %s from %s into the boot-file store", ", ".join(imported), directory)
        return imported

    async def open_file(self, name: str) -> tuple[Path, int] | None:
        """For the TFTP server: path and size of a public boot file, or None."""
        return await self.store.open_file(name)


def node_lookup(runtime: Runtime) -> NodeLookup:
    """The inventory's view of nodes, or none when Roost is built without the inventory."""
    try:
        from roost.boot.inventory import inventory_lookup
    except ImportError:  # a build without the inventory capability
        return no_inventory
    return inventory_lookup(runtime.db)


async def _no_sites(macs: Collection[str]) -> dict[str, str]:
    return {}


def node_sites(runtime: Runtime) -> NodeSites:
    """The sites of the nodes owning some MACs (none without the inventory: every MAC is then
    no node, and what belongs to one is for unscoped tokens only)."""
    try:
        from roost.boot.inventory import inventory_sites
    except ImportError:  # a build without the inventory capability
        return _no_sites
    return inventory_sites(runtime.db)


def make(runtime: Runtime) -> BootService | None:
    if not runtime.settings.boot.enabled:
        return None
    return BootService(runtime, enroll=enroller(runtime))
