"""``roost config``: the effective settings."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from roost.cli.common import ConfigOption, settings_from
from roost.settings import redacted

app = typer.Typer(help="Show and check settings.", no_args_is_help=True)


@app.command("show")
def show(config: Path | None = ConfigOption) -> None:
    """Print the effective settings (file + environment), secrets redacted."""
    print(json.dumps(redacted(settings_from(config)), indent=2))
