"""load_settings: defaults, then the TOML file, then TICKVAULT_ environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tickvault.errors import ConfigError
from tickvault.settings import DEFAULT_TOPICS, TopicSettings, load_settings, topic_kinds

PASSWORD = "hunter2-not-in-logs"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TICKVAULT_ variable from the calling shell, and no stray file in the cwd."""
    for name in list(os.environ):
        if name.upper().startswith("TICKVAULT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickvault.toml"
    path.write_text(text)
    return path


def config_error(*args: object, **overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **overrides)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    s = load_settings()
    assert s.postgres.dsn.get_secret_value() == "postgresql://postgres@127.0.0.1:5432/tickvault"
    assert s.postgres.schema_name == "tickvault"
    assert s.batch.max_rows == 5000
    assert s.batch.max_age_s == pytest.approx(0.1)
    assert s.batch.max_backlog_rows == 100_000
    assert s.batch.writers_per_kind == 2
    assert s.postgres.pool_max_size == 12
    assert s.source.kind == "redis"
    assert s.metrics.port == 9108
    assert s.log.level == "INFO"
    assert s.log.json_format is False
    assert s.redis.url.get_secret_value() == "redis://127.0.0.1:6379/0"


def test_default_topics_are_the_documented_streams() -> None:
    assert topic_kinds(load_settings()) == {
        "tickvault.klines": "kline",
        "tickvault.orders": "order",
        "tickvault.fills": "fill",
        "tickvault.bot_state": "bot_state",
        "tickvault.balances": "balance",
        "tickvault.signals": "signal",
        "tickvault.trades": "trade",
    }
    assert load_settings().source.topics == {n: TopicSettings(kind=k) for n, k in DEFAULT_TOPICS.items()}


def test_file_values(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f"""
[postgres]
dsn = "postgresql://app:{PASSWORD}@db.internal:5432/ticks"
schema = "market"
pool_max_size = 4

[batch]
max_rows = 250
max_age_s = 1.5

[metrics]
port = 9200

[log]
level = "DEBUG"
json = true
""",
    )
    s = load_settings(path)
    assert s.postgres.dsn.get_secret_value() == f"postgresql://app:{PASSWORD}@db.internal:5432/ticks"
    assert s.postgres.schema_name == "market"
    assert s.postgres.pool_max_size == 4
    assert (s.batch.max_rows, s.batch.max_age_s) == (250, 1.5)
    assert s.batch.max_backlog_rows == 100_000  # untouched options keep their defaults
    assert s.metrics.port == 9200
    assert (s.log.level, s.log.json_format) == ("DEBUG", True)


def test_file_path_may_be_a_string(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[batch]\nmax_rows = 9\n")
    assert load_settings(str(path)).batch.max_rows == 9


def test_short_topic_form(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[source]\ntopics = {"md.klines" = "kline", "bots.all" = "mixed"}\n',
    )
    s = load_settings(path)
    assert s.source.topics == {
        "md.klines": TopicSettings(kind="kline", codec="native"),
        "bots.all": TopicSettings(kind="mixed", codec="native"),
    }
    assert topic_kinds(s) == {"md.klines": "kline", "bots.all": None}


def test_table_topic_form(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[source.topics."md.fills"]\nkind = "fill"\ncodec = "native"\n')
    assert load_settings(path).source.topics == {"md.fills": TopicSettings(kind="fill")}


def test_feed_codecs(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[source.topics]\n"candles-BINANCE-BTC-USDT" = { kind = "kline", codec = "cryptofeed" }\n'
        '"binance.user" = { kind = "mixed", codec = "binance" }\n',
    )
    topics = load_settings(path).source.topics
    assert [t.codec for t in topics.values()] == ["cryptofeed", "binance"]
    bad = write_config(tmp_path, '[source.topics]\nx = { kind = "kline", codec = "avro" }\n')
    assert "source.topics" in config_error(bad)


def test_unknown_topic_kind_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[source]\ntopics = {"x" = "quote"}\n')
    assert "source.topics" in config_error(path)


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(
        tmp_path,
        '[postgres]\ndsn = "postgresql://file@h/db"\nschema = "from_file"\n'
        "[batch]\nmax_rows = 10\nmax_age_s = 2.0\n",
    )
    monkeypatch.setenv("TICKVAULT_POSTGRES__DSN", f"postgresql://env:{PASSWORD}@h/db")
    monkeypatch.setenv("TICKVAULT_BATCH__MAX_ROWS", "42")
    s = load_settings(path)
    assert s.postgres.dsn.get_secret_value() == f"postgresql://env:{PASSWORD}@h/db"
    assert s.batch.max_rows == 42
    assert s.batch.max_age_s == 2.0  # a sibling set only in the file survives the env override
    assert s.postgres.schema_name == "from_file"


def test_env_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKVAULT_METRICS__PORT", "9999")
    monkeypatch.setenv("TICKVAULT_LOG__LEVEL", "WARNING")
    monkeypatch.setenv("TICKVAULT_REDIS__URL", "redis://cache:6380/2")
    s = load_settings()
    assert s.metrics.port == 9999
    assert s.log.level == "WARNING"
    assert s.redis.url.get_secret_value() == "redis://cache:6380/2"


def test_env_topics_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKVAULT_SOURCE__TOPICS", '{"feed.all": "mixed", "feed.k": {"kind": "kline"}}')
    assert topic_kinds(load_settings()) == {"feed.all": None, "feed.k": "kline"}


def test_env_topics_replace_the_file_topics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The env value of an option replaces the file's value; for the topic map that means the
    # daemon consumes exactly the topics named in the variable, not those plus the file's.
    path = write_config(tmp_path, '[source]\ntopics = {"old.klines" = "kline"}\n')
    monkeypatch.setenv("TICKVAULT_SOURCE__TOPICS", '{"new.all": "mixed"}')
    assert topic_kinds(load_settings(path)) == {"new.all": None}


def test_invalid_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKVAULT_BATCH__MAX_ROWS", "lots")
    assert "batch.max_rows" in config_error()


def test_malformed_env_json_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKVAULT_SOURCE__TOPICS", "{not json")
    assert "source" in config_error()


def test_unknown_nested_env_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKVAULT_POSTGRES__DNS", "postgresql://typo@h/db")
    assert "postgres.DNS".lower() in config_error().lower()


def test_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKVAULT_BATCH__MAX_ROWS", "42")
    assert load_settings(batch={"max_rows": 7}).batch.max_rows == 7


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[postgres]\nbogus = 1\n", "postgres.bogus"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("[batch]\nmax_row = 1\n", "batch.max_row"),
    ],
)
def test_unknown_key_in_file_is_a_one_line_config_error(tmp_path: Path, text: str, where: str) -> None:
    message = config_error(write_config(tmp_path, text))
    assert where in message
    assert "Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[batch]\nmax_rows = 0\n", "batch.max_rows"),
        ("[metrics]\nport = 70000\n", "metrics.port"),
        ('[postgres]\nschema = "Bad-Name"\n', "postgres.schema"),
        ('[log]\nlevel = "verbose"\n', "log.level"),
    ],
)
def test_invalid_value_in_file_is_a_one_line_config_error(tmp_path: Path, text: str, where: str) -> None:
    assert where in config_error(write_config(tmp_path, text))


def test_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot read settings" in config_error(write_config(tmp_path, "[postgres\n"))


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = config_error(missing)
    assert "not found" in message
    assert str(missing) in message


def test_directory_as_config_file_is_a_config_error(tmp_path: Path) -> None:
    assert "not found" in config_error(tmp_path)


def test_dsn_is_secret_and_never_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, f'[redis]\nurl = "redis://:{PASSWORD}-r@cache:6379/0"\n')
    monkeypatch.setenv("TICKVAULT_POSTGRES__DSN", f"postgresql://app:{PASSWORD}@db:5432/ticks")
    s = load_settings(path)
    assert isinstance(s.postgres.dsn, SecretStr)
    assert isinstance(s.redis.url, SecretStr)
    assert PASSWORD in s.postgres.dsn.get_secret_value()
    for text in (
        str(s),
        repr(s),
        str(s.postgres),
        repr(s.postgres),
        str(s.model_dump()),
        str(s.redis),
    ):
        assert PASSWORD not in text


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.batch.max_rows = 1  # type: ignore[misc]


def test_example_config_documents_every_option_with_its_default() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "tickvault.example.toml"
    loaded = load_settings(example)
    defaults = load_settings()
    sections = (
        "postgres", "source", "kafka", "batch", "metrics", "log", "run", "archive", "timescale", "repository",
    )  # fmt: skip
    for section in sections:
        assert getattr(loaded, section) == getattr(defaults, section), section
    text = example.read_text()
    for section, model in (
        ("postgres", loaded.postgres), ("redis", loaded.redis), ("batch", loaded.batch),
        ("metrics", loaded.metrics), ("log", loaded.log), ("run", loaded.run), ("source", loaded.source),
        ("kafka", loaded.kafka), ("archive", loaded.archive), ("timescale", loaded.timescale),
        ("repository", loaded.repository),
    ):  # fmt: skip
        for name, field in type(model).model_fields.items():
            key = field.alias or name
            assert f"TICKVAULT_{section.upper()}__{key.upper()}" in text, f"{section}.{key} is undocumented"


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604_800), ("36h", 129_600), ("90m", 5400), ("30s", 30)])
def test_hot_retention_is_a_duration(text: str, seconds: int) -> None:
    assert load_settings(archive={"hot_retention": text}).archive.hot_retention_s == seconds


@pytest.mark.parametrize("text", ["7", "7 days", "-1d", "1.5h", ""])
def test_bad_hot_retention_is_a_config_error(text: str) -> None:
    assert "archive.hot_retention" in config_error(archive={"hot_retention": text})


def test_archive_root_scheme_is_checked() -> None:
    assert "unsupported scheme" in config_error(archive={"root": "gs://bucket/x"})


def test_s3_credentials_are_secret() -> None:
    settings = load_settings(archive={"s3_secret_access_key": "hunter2-secret"})
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings.archive)


@pytest.mark.parametrize(("text", "seconds"), [("2d", 172_800), ("36h", 129_600), ("off", None), ("", None)])
def test_compress_after_is_a_duration_or_off(text: str, seconds: int | None) -> None:
    assert load_settings(timescale={"compress_after": text}).timescale.compress_after_s == seconds


def test_bad_compress_after_is_a_config_error() -> None:
    assert "timescale.compress_after" in config_error(timescale={"compress_after": "2 days"})


def test_kline_aggregates_from_env_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKVAULT_TIMESCALE__KLINE_AGGREGATES", '["1h", "1d", "1h"]')
    monkeypatch.setenv("TICKVAULT_TIMESCALE__COMPRESS_AFTER", "7d")
    settings = load_settings()
    assert settings.timescale.kline_aggregates == ("1h", "1d")
    assert settings.timescale.compress_after_s == 7 * 86_400


@pytest.mark.parametrize("interval", ["1m", "1M", "90m"])
def test_kline_aggregate_intervals_are_checked(interval: str) -> None:
    message = config_error(timescale={"kline_aggregates": [interval]})
    assert "timescale.kline_aggregates" in message and f"not an aggregate interval: {interval}" in message
