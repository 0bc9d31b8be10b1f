"""The HTTP boot server: boot files, per-node documents, node-private files and callbacks.

URL map (all on ``boot.http_port``, never on the API port):

    GET|HEAD /files/<name>                            public boot file (Range, ETag)
    GET|HEAD /boot/boot.ipxe                          chains to the node's own script
    GET|HEAD /boot/<mac>.ipxe[?arch=|platform=&buildarch=]   the node's iPXE script
    GET|HEAD /nocloud/<mac>/meta-data                 cloud-init NoCloud meta-data
    GET|HEAD /nocloud/<mac>/<token>/{meta-data,user-data}    the same, token in the path
    GET|HEAD /preseed/<mac>/<token>/preseed.cfg       debian-installer preseed
    GET|HEAD /kickstart/<mac>/<token>/ks.cfg          kickstart
    GET|HEAD /private/<mac>/<token>/<name>            a node-private boot file
    POST     /boot/callback/<token>                   a booted system reports its facts
    POST     /boot/enroll/<enrollment token>          a booted system enrolls with its facts
    GET|HEAD /<path>                                  a file of ``boot.http_root`` (when set)

Anything node-private (user-data, preseed, kickstart, private files) needs the node's boot
token, in the path as above or as ``?token=`` on the path without it; it is checked on every
request against the node's enrollment generation and the enrollment policy (a ``ready`` or
``deployed`` node's boot token opens nothing), and the token never appears in events.
``<mac>`` may use colons or dashes, any case. Every response is published as ``boot.http.fetch``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from roost.boot.access_log import AccessLog
from roost.boot.documents import Documents
from roost.boot.http11 import Request, Response
from roost.boot.names import arch_from_ipxe, check_arch, check_file_name, normalize_mac
from roost.boot.render import RenderError, TemplateKind
from roost.boot.static import file_response
from roost.boot.store import BootFile, BootStore
from roost.errors import Forbidden, Invalid, NotFound
from roost.events import EventBus
from roost.tftp.files import OpenFile
from roost.tftp.resolver import DirectoryResolver, TFTPDenied, safe_parts

log = logging.getLogger(__name__)

CALLBACK_LIMIT = 64 * 1024
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_TOKEN = re.compile(r"^[0-9a-f]{12}-[0-9a-f]{32}$")
_RECENT = 65536  # IP→MAC pairs remembered to name the node behind a /files/ fetch
_LEAVES: dict[tuple[str, str], TemplateKind] = {
    ("nocloud", "meta-data"): "meta-data",
    ("nocloud", "user-data"): "user-data",
    ("preseed", "preseed.cfg"): "preseed",
    ("kickstart", "ks.cfg"): "kickstart",
}
_PUBLIC: set[TemplateKind] = {"ipxe", "meta-data"}
CHAIN_IPXE = (
    "#!ipxe\n"
    "chain --replace --autofree "
    "{base}/boot/${{mac}}.ipxe?platform=${{platform}}&buildarch=${{buildarch}}\n"
)
"""Served at ``/boot/boot.ipxe``: iPXE expands its own settings, so one fixed URL in DHCP
reaches every node's script with its architecture."""


Enroller = Callable[[str, str, dict[str, Any], str], Awaitable[str]]
"""``enroll(token, mac, facts, ip)``: spend a one-time enrollment token for the node and return
its state (``ready``, or ``pending`` approval); raises :class:`roost.errors.Forbidden` when the
token is refused (see roost.boot.enrollment)."""


def _text(status: int, text: str, *extra: tuple[str, str]) -> Response:
    headers = [("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")]
    return Response(status, [*headers, *extra], (text + "\n").encode())


class BootHTTP:
    """The request handler and fetch observer behind :class:`roost.boot.http11.HTTPServer`."""

    def __init__(
        self,
        store: BootStore,
        documents: Documents,
        bus: EventBus,
        public_url: str | None,
        enroll: Enroller | None = None,
        root: Path | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.access_log = access_log
        self.tree = DirectoryResolver(root) if root is not None else None
        self.store = store
        self.documents = documents
        self.bus = bus
        self.enroll = enroll
        self.public_url = public_url.rstrip("/") if public_url else None
        self.recent: OrderedDict[str, str] = OrderedDict()

    def _remember(self, ip: str, mac: str) -> None:
        self.recent[ip] = mac
        self.recent.move_to_end(ip)
        if len(self.recent) > _RECENT:
            self.recent.popitem(last=False)

    def http_base(self, request: Request) -> str:
        if self.public_url:
            return self.public_url
        host = request.headers.get("host", "")
        return f"http://{host if _HOST.match(host) else request.local}"

    # -- dispatch ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        request.note["path"] = request.path
        parts = request.path.split("/")[1:]
        try:
            if request.method == "POST" and parts[:2] == ["boot", "callback"] and len(parts) == 3:
                request.note["path"] = "/boot/callback/<token>"
                return await self._callback(request, parts[2])
            if request.method == "POST" and parts[:2] == ["boot", "enroll"] and len(parts) == 3:
                request.note["path"] = "/boot/enroll/<token>"
                return await self._enroll(request, parts[2])
            if request.method not in ("GET", "HEAD"):
                return _text(405, "method not allowed", ("allow", "GET, HEAD"))
            head = parts[0] if parts else ""
            if head == "files" and len(parts) > 1:
                return await self._public_file(request, "/".join(parts[1:]))
            if head == "boot" and len(parts) == 2 and parts[1].endswith(".ipxe"):
                return await self._script(request, parts[1].removesuffix(".ipxe"))
            if head in ("nocloud", "preseed", "kickstart", "private") and len(parts) >= 3:
                return await self._node_path(request, head, parts[1], parts[2:])
            if self.tree is not None:
                return self._tree_file(request, self.tree)
            return _text(404, "not found")
        except (Invalid, NotFound) as exc:
            return _text(exc.status if isinstance(exc, NotFound) else 400, str(exc))
        except RenderError as exc:  # names the profile and what failed, never template text
            return _text(exc.status, str(exc))

    def observe(
        self, request: Request, response: Response, sent: int, seconds: float, complete: bool
    ) -> None:
        if self.access_log is not None:
            try:
                self.access_log.write(request, response.status, sent)
            except OSError as exc:  # a full disk must not stop boots
                log.warning("boot access log %s: %s", self.access_log.path, exc)
        mac = request.note.get("mac") or self.recent.get(request.client)
        self.bus.emit(
            "boot.http.fetch",
            mac or request.client,
            {
                "mac": mac,
                "ip": request.client,
                "path": request.note.get("path", ""),
                "bytes": sent,
                "seconds": round(seconds, 6),
                "status": response.status,
                "complete": complete,
            },
            site=self.documents.site,
        )

    # -- routes --------------------------------------------------------------------------------

    async def _public_file(self, request: Request, name: str) -> Response:
        check_file_name(name)
        found = await self.store.lookup(name)
        if found is None or found.node is not None:  # private files only via /private/
            return _text(404, f"no boot file {name!r}")
        return self._stored(request, found, "no-cache")

    def _tree_file(self, request: Request, tree: DirectoryResolver) -> Response:
        """A file of ``boot.http_root``, checked and opened exactly as TFTP opens its root."""
        name = request.path.lstrip("/")
        try:
            opened = tree.open(safe_parts(name)) if name else None
        except TFTPDenied as exc:
            return _text(403, str(exc))
        if opened is None:
            return _text(404, "not found")
        assert isinstance(opened, OpenFile)  # what DirectoryResolver opens
        fd = opened.fileno()
        st = os.fstat(fd)
        # no hash of a tree file is known: its identity and change time make the strong ETag
        etag = f"{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        return file_response(
            request,
            Path(name),
            st.st_size,
            etag,
            kind,
            modified,
            [("cache-control", "no-cache")],
            fd,
        )

    def _node(self, request: Request, mac_text: str) -> str:
        mac = normalize_mac(mac_text)
        request.note["mac"] = mac
        self._remember(request.client, mac)
        return mac

    async def _script(self, request: Request, mac_text: str) -> Response:
        if mac_text == "boot":
            return _text(200, CHAIN_IPXE.format(base=self.http_base(request)).rstrip("\n"))
        mac = self._node(request, mac_text)
        q = request.query
        arch = q.get("arch") or arch_from_ipxe(q.get("platform"), q.get("buildarch"))
        return await self._render(request, "ipxe", mac, check_arch(arch) if arch else None)

    async def _node_path(
        self, request: Request, head: str, mac_text: str, rest: list[str]
    ) -> Response:
        mac = self._node(request, mac_text)
        token = request.query.get("token")
        if len(rest) > 1 and _TOKEN.match(rest[0]):
            token, rest = rest[0], rest[1:]
            request.note["path"] = "/".join(["", head, mac_text, "<token>", *rest])
        authorized = await self.documents.check(mac, token)
        if head == "private":
            if not authorized:
                return _text(403, "node-private file: this node's token is missing or wrong")
            return await self._private_file(request, mac, "/".join(rest))
        kind = _LEAVES.get((head, rest[0])) if len(rest) == 1 else None
        if kind is None:
            return _text(404, "not found")
        if kind not in _PUBLIC and not authorized:
            return _text(403, f"{kind} is node-private: this node's token is missing or wrong")
        return await self._render(request, kind, mac, None)

    def _stored(self, request: Request, found: BootFile, cache: str) -> Response:
        return file_response(
            request,
            self.store.blob_path(found.sha256),
            found.size,
            found.sha256,
            found.content_type,
            found.created_at,
            [("cache-control", cache)],
        )

    async def _private_file(self, request: Request, mac: str, name: str) -> Response:
        check_file_name(name)
        found = await self.store.lookup(name)
        if found is None or found.node != mac:
            return _text(404, f"no private boot file {name!r} for {mac}")
        return self._stored(request, found, "no-store")

    async def _render(
        self, request: Request, kind: TemplateKind, mac: str, arch: str | None
    ) -> Response:
        done = await self.documents.render(
            kind, mac, ip=request.client, arch=arch, http_base=self.http_base(request)
        )
        cache = "no-store" if kind not in _PUBLIC else "no-cache"
        return Response(
            200,
            [
                ("content-type", "text/plain; charset=utf-8"),
                ("cache-control", cache),
                ("x-roost-profile", done.profile),
            ],
            done.text.encode(),
        )

    @staticmethod
    def _facts(request: Request) -> dict[str, Any] | Response:
        if len(request.body) > CALLBACK_LIMIT:
            return _text(413, f"facts larger than {CALLBACK_LIMIT} bytes")
        try:
            facts: Any = json.loads(request.body or b"{}")
        except ValueError as exc:
            return _text(400, f"facts are not JSON: {exc}")
        if not isinstance(facts, dict):
            return _text(400, "facts must be a JSON object")
        return cast(dict[str, Any], facts)

    async def _enroll(self, request: Request, token: str) -> Response:
        """Enrollment for systems that cannot reach the API (commissioning images): the
        one-time token from the kernel command line, the facts as the body."""
        if self.enroll is None:
            return _text(404, "enrollment is not offered by this boot server")
        facts = self._facts(request)
        if isinstance(facts, Response):
            return facts
        try:
            mac = normalize_mac(str(facts.get("mac", "")))
        except Invalid:
            return _text(400, "facts must name the enrolling interface's mac")
        request.note["mac"] = mac
        self._remember(request.client, mac)
        try:
            state = await self.enroll(token, mac, facts, request.client)
        except Forbidden:
            return _text(403, "enrollment token refused")
        if state == "pending":
            waiting = {"ok": True, "mac": mac, "enrolled": False, "pending": True}
            return Response(
                202, [("content-type", "application/json")], json.dumps(waiting).encode()
            )
        # Like any booted system's report, it is a callback too (the lab's progress follows it).
        await self.bus.publish(
            "boot.callback",
            mac,
            {"mac": mac, "ip": request.client, "facts": facts, "enrolled": True},
            site=self.documents.site,
        )
        body = json.dumps({"ok": True, "mac": mac, "enrolled": True}).encode()
        return Response(200, [("content-type", "application/json")], body)

    async def _callback(self, request: Request, token: str) -> Response:
        mac = self.documents.tokens.mac_of(token)
        if mac is None or not await self.documents.check(mac, token):
            return _text(403, "unknown callback token")
        request.note["mac"] = mac
        self._remember(request.client, mac)
        facts = self._facts(request)
        if isinstance(facts, Response):
            return facts
        await self.bus.publish(
            "boot.callback",
            mac,
            {"mac": mac, "ip": request.client, "facts": facts},
            site=self.documents.site,
        )
        body = json.dumps({"ok": True, "mac": mac}).encode()
        return Response(200, [("content-type", "application/json")], body)
