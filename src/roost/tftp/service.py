"""The TFTP capability as a Roost service: settings in, :class:`TFTPServer` running, events out.

``make`` returns ``None`` unless ``tftp.enabled`` is set, so port 69 is never bound by default.
The service serves ``tftp.root`` (default ``<data_dir>/tftp``) through a
:class:`DirectoryResolver` at the end of :attr:`TFTPService.chain`; other capabilities put their
resolvers (per-client rendered scripts, the boot-file store) in front of it before it starts::

    tftp = runtime.service("tftp")
    if isinstance(tftp, TFTPService):
        tftp.chain.resolvers.insert(0, my_resolver)

Every request's end is published as a ``boot.tftp.transfer`` event with ``runtime.bus.emit``
(fire and forget: the packet path never waits for the database).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import asdict

from roost.errors import ConfigError
from roost.service import Health, Runtime
from roost.settings import TFTPSettings
from roost.tftp.resolver import ChainResolver, DirectoryResolver
from roost.tftp.server import TFTPServer, TransferRecord
from roost.tftp.session import Limits

__all__ = ["EVENT_TRANSFER", "TFTPService", "make"]

log = logging.getLogger(__name__)

EVENT_TRANSFER = "boot.tftp.transfer"
"""Event type for every finished or refused TFTP request."""


class TFTPService:
    name = "tftp"

    def __init__(self, runtime: Runtime, chain: ChainResolver | None = None) -> None:
        self.runtime = runtime
        settings: TFTPSettings = runtime.settings.tftp
        self.root = settings.root or runtime.settings.data_dir / "tftp"
        self.chain = chain or ChainResolver([DirectoryResolver(self.root)])
        self.server = TFTPServer(
            self.chain,
            host=settings.host,
            port=settings.port,
            limits=Limits(
                timeout=settings.timeout,
                retries=settings.retries,
                max_blksize=settings.max_blksize,
                max_windowsize=settings.max_windowsize,
            ),
            max_transfers=settings.max_transfers,
            on_transfer=self._publish,
            workers=settings.worker_count,
            pin_workers=settings.pin_workers,
            busy_poll=settings.busy_poll / 1e6,
        )
        self._running = False

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        await self.server.start()
        self._running = True
        log.info("TFTP serving %s on %s port %d", self.root, self.server.host, self.server.port)

    async def stop(self) -> None:
        await self.server.stop()
        self._running = False

    def health(self) -> Health:
        if not self._running:
            return Health(False, "not running")
        return Health(True, f"port {self.server.port}, {self.server.active} transfers")

    def _publish(self, record: TransferRecord) -> None:
        data = asdict(record)
        self.runtime.bus.emit(EVENT_TRANSFER, subject=record.mac or record.ip, data=data)


def make(runtime: Runtime) -> TFTPService | None:
    settings = runtime.settings.tftp
    if not settings.enabled:
        return None
    try:
        ipaddress.ip_address(settings.host)
    except ValueError:
        raise ConfigError(
            f"tftp.host: must be an IP address such as 0.0.0.0 (got {settings.host!r})"
        ) from None
    return TFTPService(runtime)
