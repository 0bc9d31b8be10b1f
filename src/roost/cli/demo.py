"""``roost demo``: Roost's main job on its embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer

from roost import logs, server
from roost.cli.common import ConfigOption, settings_from


def demo(
    config: Path | None = ConfigOption,
    port: int | None = typer.Option(None, help="API port (api.port)"),
) -> None:
    """Start Roost with its embedded defaults and show how to reach the API."""
    settings = settings_from(config, **{"api.port": port})
    logs.configure(settings.log)
    token_file = settings.data_dir / "admin-token"
    print(
        f"Roost demo: data in {settings.data_dir}; the admin token is in {token_file}.\n"
        f"Try, in another shell:\n"
        f'  curl -H "Authorization: Bearer $(cat {token_file})" '
        f"http://{settings.api.host}:{settings.api.port}/api/v1/events\n"
        f"  .venv/bin/roost events --follow\n"
        f"Ctrl-C stops it.\n",
        flush=True,
    )
    server.run(settings)
