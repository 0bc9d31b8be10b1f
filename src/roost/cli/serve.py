"""``roost serve``."""

from __future__ import annotations

from pathlib import Path

import typer

from roost import files, logs, server
from roost.cli.common import ConfigOption, settings_from


def serve(
    config: Path | None = ConfigOption,
    host: str | None = typer.Option(None, help="API listen address (api.host)"),
    port: int | None = typer.Option(None, help="API port (api.port)"),
    data_dir: Path | None = typer.Option(None, help="data directory (data_dir)"),
    log_format: str | None = typer.Option(None, help="console or json (log.format)"),
) -> None:
    """Run the Roost server: API, event bus and every enabled service."""
    files.private_umask()  # before anything is created: Roost's files are its user's only
    settings = settings_from(
        config,
        **{"api.host": host, "api.port": port, "data_dir": data_dir, "log.format": log_format},
    )
    logs.configure(settings.log)
    server.run(settings)
