"""Where the commissioning image is: the kernel and initramfs the bootstrap builds.

``scripts/bootstrap.d/50-commissioning-image.sh`` writes ``vmlinuz``, ``initrd.img`` and
``manifest.json`` into ``var/images/commissioning`` of the source tree; an installed Roost
looks in ``<data_dir>/images/commissioning``. An explicit directory wins over both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.errors import NotFound
from roost.settings import DEFAULT_DATA_DIR

SOURCE_TREE = Path(__file__).resolve().parents[3]
"""The checkout this module runs from (src/roost/lab/image.py → repo root)."""


@dataclass(frozen=True)
class CommissioningImage:
    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    def manifest(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.directory / "manifest.json").read_text())
        except (OSError, ValueError):
            return {}
        return data


def candidates(directory: Path | None = None, data_dir: Path | None = None) -> list[Path]:
    if directory is not None:
        return [directory]
    return [
        SOURCE_TREE / "var" / "images" / "commissioning",
        (data_dir or DEFAULT_DATA_DIR) / "images" / "commissioning",
    ]


def locate(directory: Path | None = None, data_dir: Path | None = None) -> CommissioningImage:
    """The first place holding both files; NotFound says how to build it."""
    tried = candidates(directory, data_dir)
    for path in tried:
        image = CommissioningImage(path)
        if image.kernel.is_file() and image.initrd.is_file():
            return image
    raise NotFound(
        "no commissioning image in "
        + ", ".join(str(p) for p in tried)
        + ": build it with scripts/bootstrap (step 50-commissioning-image.sh)"
    )


def cmdline(
    callback: str,
    token: str,
    after: str = "poweroff",
    console: str = "ttyS0",
    enroll: str | None = None,
) -> str:
    """The kernel command line the image's /init reads (see commissioning/init)."""
    line = f"console={console} quiet roost.callback={callback} roost.token={token}"
    if enroll:
        line += f" roost.enroll={enroll}"
    return f"{line} roost.after={after}"
