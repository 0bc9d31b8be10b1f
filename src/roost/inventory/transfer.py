"""Import and export of nodes as CSV or JSON, in one shape that round-trips.

A record has the fields of :class:`~roost.inventory.nodes.NodeSpec` plus ``id`` and ``state``,
which export writes for the reader and import ignores (a node's lifecycle is earned, not
imported). In CSV, ``tags`` and ``interfaces`` (extra MACs) are ``;``-separated and
``power_settings`` is a JSON object. Secrets export as ``***``; importing ``***`` keeps the
stored secret, so an export never carries a secret and a re-import never loses one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from roost.errors import Invalid
from roost.inventory.nodes import NodeSpec
from roost.inventory.views import NodeOut

COLUMNS = [
    "id",
    "mac",
    "hostname",
    "site",
    "state",
    "tags",
    "ip",
    "architecture",
    "vendor",
    "boot_profile",
    "interfaces",
    "power_driver",
    "power_settings",
]
INFORMATIONAL = ("id", "state")


def export_record(node: NodeOut) -> dict[str, Any]:
    return {
        "id": node.id,
        "mac": node.mac,
        "hostname": node.hostname,
        "site": node.site,
        "state": node.state,
        "tags": node.tags,
        "ip": node.ip,
        "architecture": node.architecture,
        "vendor": node.vendor,
        "boot_profile": node.boot_profile,
        "interfaces": [i.model_dump() for i in node.interfaces if i.mac != node.mac],
        "power_driver": node.power.driver,
        "power_settings": node.power.settings,
    }


def to_csv(records: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = dict(r)
        row["tags"] = ";".join(r["tags"])
        row["interfaces"] = ";".join(i["mac"] for i in r["interfaces"])
        row["power_settings"] = json.dumps(r["power_settings"]) if r["power_settings"] else ""
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return out.getvalue()


def _spec(index: int, record: Any) -> NodeSpec:
    if not isinstance(record, dict):
        raise Invalid(f"record {index}: expected an object with at least a mac")
    fields = {k: v for k, v in record.items() if k not in INFORMATIONAL}
    try:
        return NodeSpec.model_validate(fields)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise Invalid(f"record {index}: {where}") from None


def _from_csv_row(index: int, row: dict[str, str | None]) -> NodeSpec:
    record: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
    unknown = set(record) - set(COLUMNS)
    if unknown:
        raise Invalid(f"CSV has unknown columns {sorted(unknown)}; known: {', '.join(COLUMNS)}")
    if "tags" in record:
        record["tags"] = [t for t in record["tags"].split(";") if t]
    if "interfaces" in record:
        record["interfaces"] = [{"mac": m} for m in record["interfaces"].split(";") if m]
    if "power_settings" in record:
        try:
            record["power_settings"] = json.loads(record["power_settings"])
        except json.JSONDecodeError:
            raise Invalid(f"record {index}: power_settings must be a JSON object") from None
    return _spec(index, record)


def parse(body: bytes, content_type: str) -> list[NodeSpec]:
    """Records from a CSV (``text/csv``) or JSON (a list of objects) document."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the import must be UTF-8 text") from None
    if "csv" in content_type:
        reader = csv.DictReader(io.StringIO(text))
        try:
            rows = list(reader)
        except csv.Error as exc:  # e.g. a field over csv's limit of 128 KiB
            raise Invalid(f"CSV line {reader.reader.line_num}: {exc}") from None
        if rows and "mac" not in rows[0]:
            raise Invalid("CSV needs a header line with at least a mac column")
        return [_from_csv_row(i, r) for i, r in enumerate(rows, 1)]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"the import is not JSON ({exc}); send CSV as text/csv") from None
    except RecursionError:
        raise Invalid("the import is nested too deeply to be a list of node objects") from None
    if not isinstance(data, list):
        raise Invalid("a JSON import is a list of node objects")
    return [_spec(i, r) for i, r in enumerate(data, 1)]
