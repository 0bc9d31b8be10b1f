"""Settings: file, environment and flags in the right precedence; precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.errors import ConfigError
from roost.settings import load_settings, redacted

pytestmark = pytest.mark.unit


def test_defaults_are_safe() -> None:
    s = load_settings()
    assert s.api.host == "127.0.0.1"
    assert str(s.data_dir) == "/var/lib/roost"
    assert s.database_url.startswith("sqlite+aiosqlite:////var/lib/roost/")


def test_precedence_flags_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "roost.toml"
    cfg.write_text('site = "rack1"\n[api]\nport = 9000\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("ROOST_API__PORT", "9100")
    monkeypatch.setenv("ROOST_DATA_DIR", str(tmp_path / "d"))
    s = load_settings(cfg)
    assert (s.site, s.api.host, s.api.port, s.data_dir) == (
        "rack1",
        "0.0.0.0",
        9100,
        tmp_path / "d",
    )
    s = load_settings(cfg, {"api.port": 9200, "api.host": None})
    assert (s.api.port, s.api.host) == (9200, "0.0.0.0")


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "roost.toml"
    cfg.write_text('[log]\nformat = "json"\n')
    monkeypatch.setenv("ROOST_CONFIG", str(cfg))
    assert load_settings().log.format == "json"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[api]\nport = "high"\n', "api.port: Input should be a valid integer"),
        ("[api]\nport = 70000\n", "api.port: Input should be less than or equal to 65535"),
        ("[api]\nprot = 1\n", "api.prot: unknown setting"),
        ('[log]\nformat = "xml"\n', "log.format: Input should be 'console' or 'json'"),
        ("[api\n", "not valid TOML"),
    ],
)
def test_invalid_file_names_the_key(tmp_path: Path, body: str, expected: str) -> None:
    cfg = tmp_path / "roost.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert expected in str(err.value)
    assert str(cfg) in str(err.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such settings file"):
        load_settings(tmp_path / "nope.toml")


def test_redaction_hides_database_password() -> None:
    s = load_settings(None, {"database.url": "postgresql+asyncpg://roost:s3cret@db/roost"})
    shown = redacted(s)
    assert "s3cret" not in str(shown)
    assert shown["database"]["url"] == "postgresql+asyncpg://roost:***@db/roost"
