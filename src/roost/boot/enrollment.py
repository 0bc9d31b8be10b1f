"""Boot meets PKI: what an anonymous render may carry, and enrollment through the HTTP boot
server for systems that cannot reach the API.

A commissioning image lives on the nodes' LAN, where the boot server listens, while the API
stays on loopback unless the operator opens it (MAAS's metadata service sits on the rack for
the same reason). Anyone on that LAN can fetch any MAC's documents, so :class:`EnrollmentGate`
asks the enrollment policy (:mod:`roost.pki.policy`) on every render whether this MAC may
enroll now. If it may, the render carries ``token`` — a one-time enrollment token bound to the
MAC and its site, living ``enroll.boot_token_ttl`` and re-used by every render until it is
spent or nearly expired (minting is capped, :mod:`roost.pki.limits`) — and ``boot_token`` for
the node's enrollment generation. If it may not, it carries neither. ``POST
/boot/enroll/<token>`` spends the token with the facts in the body, exactly as ``POST
/api/v1/enroll`` would.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from roost.boot.documents import Admission
from roost.boot.server import Enroller
from roost.boot.tokens import BootTokens
from roost.db.models import utcnow
from roost.errors import Forbidden
from roost.inventory import store
from roost.inventory.lifecycle import State
from roost.pki import tokens
from roost.pki.enroll import enroll
from roost.pki.limits import AnonymousLimit
from roost.pki.policy import anonymous_may_enroll, lease_refusal, site_policy
from roost.pki.tokens import TokenRefused
from roost.service import Runtime

log = logging.getLogger(__name__)

_MINTED_KEPT = 65536


@dataclass(frozen=True)
class Standing:
    """What the policy needs to know about one MAC."""

    site: str
    state: State | None
    generation: int
    recommission: bool


@dataclass(frozen=True)
class _Minted:
    token: str
    id: str
    site: str
    expires_at: datetime
    ttl: timedelta


class EnrollmentGate:
    """The :class:`roost.boot.documents.Gate` of ``roost serve``."""

    def __init__(self, runtime: Runtime, boot_tokens: BootTokens) -> None:
        cfg = runtime.settings.enroll
        self.runtime = runtime
        self.tokens = boot_tokens
        self.limit = AnonymousLimit(
            "tokens", cfg.anonymous_token_burst, cfg.anonymous_tokens_per_minute, runtime.bus
        )
        self.minted: OrderedDict[str, _Minted] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def standing(self, mac: str) -> Standing:
        async with self.runtime.db.session() as s:
            node = await store.node_by_mac(s, mac)
            if node is None:
                return Standing(self.runtime.settings.site, None, 0, False)
            return Standing(node.site, State(node.state), node.enroll_generation, node.recommission)

    def _may(self, st: Standing) -> bool:
        auto = site_policy(self.runtime, st.site).auto
        return anonymous_may_enroll(auto, st.state, st.recommission)

    async def admit(self, mac: str, ip: str, mint: bool = True) -> Admission:
        st = await self.standing(mac)
        if not self._may(st):
            return Admission(None, None)
        refused = lease_refusal(self.runtime, st.site, mac, ip)
        if refused is not None:
            log.info("no tokens in the render for %s: %s", mac, refused)
            return Admission(None, None)
        token = await self._token(mac, st.site) if mint else None
        return Admission(token, self.tokens.issue(mac, st.generation))

    async def check(self, mac: str, boot_token: str | None) -> bool:
        if not boot_token or self.tokens.mac_of(boot_token) != mac:
            return False
        st = await self.standing(mac)
        return self._may(st) and self.tokens.check(mac, boot_token, st.generation)

    async def _token(self, mac: str, site: str) -> str | None:
        """The MAC's open minted token, or a new one when the cap allows."""
        lock = self._locks.get(mac)
        if lock is None:
            lock = self._locks[mac] = asyncio.Lock()
        async with lock:
            now = utcnow()
            kept = self.minted.get(mac)
            # Re-used while a quarter of its life is left, so the node has time to spend it.
            if kept is not None and kept.site == site and kept.expires_at - now > kept.ttl / 4:
                async with self.runtime.db.session() as s:
                    if await tokens.still_open(s, kept.id, now):
                        return kept.token
            if not self.limit.allow(mac, site):
                return None
            ttl = timedelta(seconds=site_policy(self.runtime, site).boot_token_ttl)
            async with self.runtime.db.session() as s:
                token, row = await tokens.create_token(
                    s,
                    node_id=None,
                    mac=mac,
                    site=site,
                    ttl=ttl,
                    max_ttl=ttl,
                    now=now,
                    anonymous=True,
                )
            self.minted[mac] = _Minted(token, row.id, site, row.expires_at, ttl)
            self.minted.move_to_end(mac)
            if len(self.minted) > _MINTED_KEPT:
                self.minted.popitem(last=False)
            return token


def enroller(runtime: Runtime) -> Enroller:
    async def enroll_node(token: str, mac: str, facts: dict[str, Any], ip: str) -> str:
        try:
            return (await enroll(runtime, token, mac, facts, ip=ip, source=ip)).node.state
        except TokenRefused as exc:
            raise Forbidden(str(exc)) from None

    return enroll_node
