"""The service lifecycle every part of ``roost serve`` follows, and the runtime that runs them.

A service is anything with ``name``, ``start()``, ``stop()`` and ``health()``. Capabilities
register a factory under the ``roost.services`` entry-point group; the factory gets the
:class:`Runtime` and returns a service, or ``None`` when its settings disable it. Services
start in entry-point name order and stop in reverse; constructors do no I/O.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from roost.db import Database
from roost.events import EventBus
from roost.files import private_dir, private_umask
from roost.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


@runtime_checkable
class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> Health: ...


ServiceFactory = Callable[["Runtime"], Service | None]


@dataclass
class Runtime:
    """Everything a running Roost shares: settings, database, event bus and services."""

    settings: Settings
    db: Database
    bus: EventBus
    services: list[Service] = field(default_factory=list)
    started: bool = False
    _umask: int | None = None

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        db = Database(settings.database_url)
        return cls(settings=settings, db=db, bus=EventBus(db, settings.events))

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    async def start(self, load_services: bool = True) -> None:
        # files are this user's only while Roost runs (see roost.files); restored at stop
        self._umask = private_umask()
        private_dir(self.settings.data_dir)
        await self.db.open()
        await self.bus.start()
        if load_services:
            for ep in sorted(entry_points(group="roost.services"), key=lambda e: e.name):
                factory: ServiceFactory = ep.load()
                svc = factory(self)
                if svc is not None:
                    self.services.append(svc)
        try:
            for svc in self.services:
                log.info("starting service %s", svc.name)
                await svc.start()
        except BaseException:
            await self.stop()
            raise
        self.started = True

    async def stop(self) -> None:
        for svc in reversed(self.services):
            try:
                await svc.stop()
            except Exception:
                log.exception("stopping service %s failed", svc.name)
        await self.bus.stop()
        await self.db.close()
        self.started = False
        if self._umask is not None:
            os.umask(self._umask)
            self._umask = None

    def health(self) -> dict[str, Health]:
        return {s.name: s.health() for s in self.services}
