"""The one settings object: defaults, then a TOML file, then `TICKVAULT_` environment variables.

Nested options use `__` in environment variables, e.g. `TICKVAULT_POSTGRES__DSN`. This module
is the only reader of the environment; it opens no connection.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tickvault.connection_settings import KafkaSettings as KafkaSettings
from tickvault.connection_settings import PostgresSettings as PostgresSettings
from tickvault.connection_settings import RedisSettings as RedisSettings
from tickvault.connection_settings import Section
from tickvault.errors import ConfigError
from tickvault.records import MAX_STATE_BYTES
from tickvault.timestamps import MIN_EPOCH_MS

MAX_MESSAGE_BYTES: Final = 1_048_576  # default of source.max_message_bytes (and of import)

TopicKind = Literal["kline", "order", "fill", "bot_state", "balance", "signal", "trade", "mixed"]

DEFAULT_TOPICS: Final[dict[str, TopicKind]] = {
    "tickvault.klines": "kline",
    "tickvault.orders": "order",
    "tickvault.fills": "fill",
    "tickvault.bot_state": "bot_state",
    "tickvault.balances": "balance",
    "tickvault.signals": "signal",
    "tickvault.trades": "trade",
}


class TopicSettings(Section):
    kind: TopicKind
    # the wire format (tickvault.codecs): tickvault's own JSON, cryptofeed's backends, or
    # Binance's raw websocket events
    codec: Literal["native", "cryptofeed", "binance"] = "native"


class SourceSettings(Section):
    kind: Literal["redis", "kafka"] = "redis"
    topics: dict[str, TopicSettings] = Field(
        default_factory=lambda: {name: TopicSettings(kind=kind) for name, kind in DEFAULT_TOPICS.items()}
    )
    patterns: dict[str, TopicSettings] = Field(default_factory=dict)
    max_message_bytes: int = Field(MAX_MESSAGE_BYTES, ge=1024)
    # integer timestamps below it are refused as likely epoch seconds; lowering it allows
    # older dates, raising it past the default would call milliseconds seconds
    min_epoch_ms: int = Field(MIN_EPOCH_MS, ge=0, le=MIN_EPOCH_MS)

    @field_validator("topics", "patterns", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """Allow `topics = {"name" = "kline"}` as well as the table form."""
        if isinstance(value, dict):
            return {k: {"kind": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: dict[str, TopicSettings]) -> dict[str, TopicSettings]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something_to_read(self) -> SourceSettings:
        if self.patterns and self.kind != "kafka":
            raise ValueError("patterns need kind = 'kafka'; Redis Streams are named one by one in topics")
        if not self.topics and not self.patterns:
            raise ValueError("name at least one topic or pattern")
        return self


class BatchSettings(Section):
    max_rows: int = Field(5000, ge=1)
    max_age_s: float = Field(0.1, gt=0)
    max_backlog_rows: int = Field(100_000, ge=1)
    writers_per_kind: int = Field(2, ge=1, le=16)


class MetricsSettings(Section):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65535)
    lag_interval_s: float = Field(5.0, gt=0)
    max_symbol_series: int = Field(1000, ge=0)


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")


class RunSettings(Section):
    drain_grace_s: float = Field(30.0, gt=0)
    partition_check_interval_s: float = Field(3600.0, gt=0)


_DURATION_RE: Final = re.compile(r"^\s*(\d+)\s*([dhms])\s*$")
_DURATION_UNIT_S: Final = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration_s(text: str) -> int:
    """`7d`, `36h`, `90m`, `30s` → seconds. Raises ValueError naming the accepted forms."""
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected a whole number and d, h, m or s, e.g. 7d, 36h)")
    return int(match[1]) * _DURATION_UNIT_S[match[2]]


class ArchiveSettings(Section):
    """The cold tier (tickvault.archive). Credentials are only ever passed to the filesystem."""

    secret_files = ("s3_access_key_id", "s3_secret_access_key")
    enabled: bool = False
    root: str = "./tickvault-archive"
    interval_s: float = Field(3600.0, gt=0)
    hot_retention: str = "7d"
    snapshot_retention: str = "1d"
    lock_timeout_s: float = Field(5.0, gt=0)
    parallel_partitions: int = Field(2, ge=1)
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_access_key_id_file: Path | None = None
    s3_secret_access_key_file: Path | None = None

    @field_validator("hot_retention", "snapshot_retention")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration_s(value)
        return value

    @field_validator("root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a directory or an s3://bucket/prefix URL")
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("", "file", "s3"):
            raise ValueError(f"unsupported scheme {scheme!r}: use a local path, file:// or s3://")
        return value

    @property
    def hot_retention_s(self) -> int:
        return parse_duration_s(self.hot_retention)

    @property
    def snapshot_retention_s(self) -> int:
        return parse_duration_s(self.snapshot_retention)


# kline intervals a continuous aggregate of the 1m series can have: fixed widths, in minutes
AGGREGATE_INTERVAL_MIN: Final = {
    "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "6h": 360,
    "8h": 480, "12h": 720, "1d": 1440, "3d": 4320, "1w": 10080,
}  # fmt: skip


class TimescaleSettings(Section):
    """TimescaleDB features, applied by `tickvault migrate` (and at start) where the time
    tables are hypertables (`postgres.timescale`); native partitions ignore them."""

    compress_after: str = "off"
    kline_aggregates: tuple[str, ...] = ()

    @field_validator("compress_after")
    @classmethod
    def _compress_after(cls, value: str) -> str:
        if value.strip().lower() not in ("", "off"):
            parse_duration_s(value)
        return value

    @field_validator("kline_aggregates")
    @classmethod
    def _aggregates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in AGGREGATE_INTERVAL_MIN]
        if unknown:
            raise ValueError(
                f"not an aggregate interval: {', '.join(unknown)} "
                f"(one of {', '.join(AGGREGATE_INTERVAL_MIN)})"
            )
        return tuple(dict.fromkeys(value))

    @property
    def compress_after_s(self) -> int | None:
        """None when compression is off."""
        off = self.compress_after.strip().lower() in ("", "off")
        return None if off else parse_duration_s(self.compress_after)


class StateSettings(Section):
    """Bot state (tickvault.state): the Redis cache of each bot's latest snapshot, kept on the
    server `redis.url` names, and the history table's retention in PostgreSQL."""

    cache: bool = True
    key_prefix: str = Field("tickvault.", max_length=64, pattern=r"^[^\s]*$")
    redis_timeout_s: float = Field(0.25, gt=0, le=30)
    retry_after_s: float = Field(5.0, gt=0)
    refill_interval_s: float = Field(10.0, gt=0)
    refill_batch_rows: int = Field(1000, ge=1, le=100_000)
    history_retention: str = "30d"
    prune_interval_s: float = Field(3600.0, gt=0)
    max_bytes: int = Field(MAX_STATE_BYTES, ge=2)

    @field_validator("history_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        if value.strip().lower() != "off":
            parse_duration_s(value)
        return value

    @property
    def history_retention_s(self) -> int | None:
        """None when history is kept forever ("off")."""
        off = self.history_retention.strip().lower() == "off"
        return None if off else parse_duration_s(self.history_retention)


MAX_S3_COPY_BYTES: Final = 5 * 1024**3  # S3's CopyObject limit: a blob is renamed into place by one copy


class RepositorySettings(Section):
    """The model, config and backtest repositories (tickvault.repository): blobs under
    `archive.root` (local or S3, with the archive's S3 settings), the registry in PostgreSQL."""

    max_blob_bytes: int = Field(1024**3, ge=1, le=MAX_S3_COPY_BYTES)
    max_config_bytes: int = Field(1_048_576, ge=2, le=64 * 1_048_576)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TICKVAULT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    postgres: PostgresSettings = PostgresSettings()
    source: SourceSettings = SourceSettings()
    redis: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    batch: BatchSettings = BatchSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    run: RunSettings = RunSettings()
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    timescale: TimescaleSettings = TimescaleSettings()
    state: StateSettings = StateSettings()
    repository: RepositorySettings = RepositorySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls)


class _TomlSource(TomlConfigSettingsSource):
    """The TOML file, except that topics or patterns given in the environment replace the
    file's instead of merging with them (otherwise a topic could never be removed by env)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        in_env = {k for k in ("topics", "patterns") if f"TICKVAULT_SOURCE__{k.upper()}" in os.environ}
        if in_env and isinstance(data.get("source"), dict):
            data["source"] = {k: v for k, v in data["source"].items() if k not in in_env}
        return data


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, `config_file` (TOML), the environment and `overrides`."""
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"config file not found: {config_file}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
    except ValueError as exc:  # malformed TOML or env JSON
        raise ConfigError(f"cannot read settings: {exc}") from None


def topic_kinds(settings: Settings) -> dict[str, str | None]:
    """Topic name → the kind its messages default to (None: each message says)."""
    return {name: (None if t.kind == "mixed" else t.kind) for name, t in settings.source.topics.items()}
