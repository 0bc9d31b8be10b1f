"""What every CLI module shares: the connection state and output in table or JSON form."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from roost.client import Client, locate
from roost.settings import Settings, load_settings

# No emoji codes: a MAC such as 52:54:00:ab:cd:01 would print as 52:54:00🆎cd:01.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

JSONOption = typer.Option(False, "--json", help="print JSON instead of a table")
ConfigOption = typer.Option(
    None, "--config", "-c", help="settings file (or ROOST_CONFIG)", exists=False
)


@dataclass
class State:
    url: str | None = None
    token: str | None = None


def client(ctx: typer.Context) -> Client:
    """The API client of this command, closed with it (in-process callers keep no socket)."""
    state: State = ctx.obj or State()
    api = Client(locate(state.url, state.token))
    ctx.call_on_close(api.close)
    return api


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, overrides)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> None:
    table = Table(title=title or None)
    for col in columns:
        table.add_column(col)
    for row in rows:
        # Text, not markup: values come from machines and users ("[...]" is not styling).
        table.add_row(*(Text("" if row.get(c) is None else str(row.get(c))) for c in columns))
    console.print(table)


def act(
    ctx: typer.Context,
    method: str,
    path: str,
    as_json: bool,
    say: Callable[[Any], str],
    **kw: Any,
) -> Any:
    """Call the API once and show the result: the JSON with ``--json``, else ``say(result)``."""
    with client(ctx) as c:
        result = c.request(method, path, **kw)
    if as_json:
        print_json(result)
    else:
        console.print(say(result))
    return result


def output(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        print_json(list(rows))
    else:
        print_table(rows, columns)
