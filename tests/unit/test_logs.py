"""Structured logs: one JSON object per line with the record's extra fields."""

from __future__ import annotations

import json
import logging

import pytest

from roost.logs import configure
from roost.settings import LogSettings

pytestmark = pytest.mark.unit


def test_json_format_carries_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure(LogSettings(format="json", level="info"))
    try:
        logging.getLogger("roost.test").info("lease bound", extra={"mac": "52:54:00:00:00:01"})
        logging.getLogger("roost.test").debug("not shown at info")
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        record = json.loads(lines[0])
        assert record["message"] == "lease bound"
        assert record["mac"] == "52:54:00:00:00:01"
        assert record["level"] == "info" and record["logger"] == "roost.test"
    finally:
        logging.getLogger().handlers.clear()
