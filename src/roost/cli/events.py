"""``roost events``: print or follow the event stream."""

from __future__ import annotations

import json
from typing import Any

import typer

from roost.cli.common import JSONOption, client, console, print_table


def _line(ev: dict[str, Any]) -> str:
    data = json.dumps(ev.get("data") or {}, separators=(",", ":"))
    return (
        f"{ev['id']:>8}  {ev['time'][:23]}  {ev['type']:<28} {ev.get('subject') or '-':<20} {data}"
    )


def events(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new events"),
    type_: list[str] = typer.Option(
        [], "--type", "-t", help="type prefix, e.g. dhcp. (repeatable)"
    ),
    subject: str | None = typer.Option(None, help="only this subject"),
    since: str | None = typer.Option(None, help="event id, ISO 8601 time or age (15m)"),
    tail: int = typer.Option(20, help="how many recent events to show first"),
    as_json: bool = JSONOption,
) -> None:
    """Print recent events; with --follow, stream new ones as they happen."""
    params: dict[str, Any] = {"type": type_, "tail": tail}
    if subject:
        params["subject"] = subject
    if since:
        params["since"] = since
    with client(ctx) as c:
        recent = c.get("/events/history", params=params)
        if not follow:
            if as_json:
                print(json.dumps(recent, indent=2))
            else:
                print_table(
                    [{**e, "data": json.dumps(e["data"])} for e in recent],
                    ["id", "time", "type", "subject", "site", "data"],
                )
            return
        for ev in recent:
            print(json.dumps(ev) if as_json else _line(ev), flush=True)
        stream_params: dict[str, Any] = {"type": type_}
        if subject:
            stream_params["subject"] = subject
        # Replay from the last shown event (or from the start of this filter) so nothing
        # published between the two requests is missed.
        stream_params["since"] = str(recent[-1]["id"] if recent else 0)
        if not as_json:
            console.print("[dim]following; Ctrl-C to stop[/dim]")
        for ev in c.sse("/events", params=stream_params):
            print(json.dumps(ev) if as_json else _line(ev), flush=True)
