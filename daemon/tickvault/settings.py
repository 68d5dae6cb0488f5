"""The one settings object: defaults, then a TOML file, then `TICKVAULT_` environment variables.

Nested options use `__` in environment variables, e.g. `TICKVAULT_POSTGRES__DSN`. This module
is the only reader of the environment; it opens no connection.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tickvault.errors import ConfigError

Identifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
TopicKind = Literal["kline", "order", "fill", "bot_state", "mixed"]

DEFAULT_TOPICS: Final[dict[str, TopicKind]] = {
    "tickvault.klines": "kline",
    "tickvault.orders": "order",
    "tickvault.fills": "fill",
    "tickvault.bot_state": "bot_state",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostgresSettings(_Section):
    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tickvault")
    schema_name: Identifier = Field("tickvault", alias="schema")
    pool_max_size: int = Field(8, ge=2, le=100)
    connect_timeout_s: float = Field(10.0, gt=0)
    connect_retries: int = Field(30, ge=0)
    retry_max_backoff_s: float = Field(5.0, gt=0)
    create_database: bool = True
    migrate_on_start: bool = True
    timescale: Literal["auto", "on", "off"] = "auto"
    partition_interval_days: int = Field(7, ge=1, le=366)
    partitions_ahead: int = Field(2, ge=0, le=52)


class TopicSettings(_Section):
    kind: TopicKind
    codec: Literal["native"] = "native"


class SourceSettings(_Section):
    kind: Literal["redis"] = "redis"
    topics: dict[str, TopicSettings] = Field(
        default_factory=lambda: {name: TopicSettings(kind=kind) for name, kind in DEFAULT_TOPICS.items()}
    )
    max_message_bytes: int = Field(1_048_576, ge=1024)

    @field_validator("topics", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """Allow `topics = {"name" = "kline"}` as well as the table form."""
        if isinstance(value, dict):
            return {k: {"kind": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class RedisSettings(_Section):
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    group: str = Field("tickvault", min_length=1)
    consumer: str = Field(default_factory=socket.gethostname, min_length=1)
    start_id: str = Field("0", pattern=r"^(\$|0|\d+-\d+)$")
    read_count: int = Field(1000, ge=1)
    block_ms: int = Field(200, ge=1)
    claim_idle_s: float = Field(60.0, gt=0)
    claim_interval_s: float = Field(10.0, gt=0)
    connect_retries: int = Field(30, ge=0)
    retry_max_backoff_s: float = Field(5.0, gt=0)


class BatchSettings(_Section):
    max_rows: int = Field(5000, ge=1)
    max_age_s: float = Field(0.2, gt=0)
    max_backlog_rows: int = Field(100_000, ge=1)


class MetricsSettings(_Section):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65535)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")


class RunSettings(_Section):
    drain_grace_s: float = Field(30.0, gt=0)
    partition_check_interval_s: float = Field(3600.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TICKVAULT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    postgres: PostgresSettings = PostgresSettings()
    source: SourceSettings = SourceSettings()
    redis: RedisSettings = Field(default_factory=RedisSettings)
    batch: BatchSettings = BatchSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    run: RunSettings = RunSettings()

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
    """The TOML file, except that topics given in the environment replace the file's topics
    instead of merging with them (otherwise a topic could never be removed by env)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        if "TICKVAULT_SOURCE__TOPICS" in os.environ and isinstance(data.get("source"), dict):
            data["source"] = {k: v for k, v in data["source"].items() if k != "topics"}
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
