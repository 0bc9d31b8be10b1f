"""The boot capability as a TFTP resolver: per-node iPXE scripts and the boot-file store.

The TFTP server asks its resolvers in turn (``async resolve(path, client) -> TFTPFile |
None``); this one answers ``boot/<mac>.ipxe`` with the node's rendered script (for iPXE
builds that fetch their script over TFTP) and any other name with the public boot file of
that name from the store, opened once and handed over as a file descriptor. Names that are
not boot-file names are left to the next resolver, which refuses what could escape its root.
Node-private files are never served over TFTP: it has no way to carry the node's token.
"""

from __future__ import annotations

import os

from roost.boot.documents import Documents
from roost.boot.names import check_file_name, normalize_mac
from roost.boot.render import RenderError
from roost.boot.store import BootStore
from roost.errors import Invalid, NotFound
from roost.tftp.files import MemoryFile, OpenFile, TFTPFile


class BootResolver:
    def __init__(
        self, store: BootStore, documents: Documents | None = None, http_base: str | None = None
    ) -> None:
        self.store = store
        self.documents = documents
        self.http_base = http_base.rstrip("/") if http_base else None

    async def resolve(self, path: str, client: tuple[str, int]) -> TFTPFile | None:
        name = path.lstrip("/")  # PXE ROMs often ask for "/undionly.kpxe"
        if name.startswith("boot/") and name.endswith(".ipxe"):
            return await self._script(name[5:-5], client[0])
        try:
            check_file_name(name)
        except Invalid:
            return None
        found = await self.store.open_file(name)
        if found is None:
            return None
        blob, size = found
        try:
            fd = os.open(blob, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # deleted between lookup and open
        return OpenFile(fd, size)

    async def _script(self, mac_text: str, ip: str) -> TFTPFile | None:
        if self.documents is None or self.http_base is None:
            return None
        try:
            mac = normalize_mac(mac_text)
            done = await self.documents.render(
                "ipxe", mac, ip=ip, arch=None, http_base=self.http_base
            )
        except (Invalid, NotFound, RenderError):
            return None
        return MemoryFile(done.text.encode())
