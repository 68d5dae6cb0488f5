"""The connection sections of the settings: PostgreSQL, Redis and Kafka, with their TLS and
secret options, and the base every settings section shares.

`tickvault.settings` builds the one Settings object from these and re-exports them; this
module reads no environment variable and opens nothing.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tickvault.credentials import read_secret_files

Identifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]


class Section(BaseModel):
    """A settings section: unknown keys refused, frozen, `<name>_file` secrets read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # secret settings that may come from a file instead, as `<name>_file` (tickvault.credentials);
    # the file's text replaces the `_file` key before validation, so those fields stay None
    secret_files: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        return read_secret_files(data, cls.secret_files)


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresSettings(Section):
    secret_files = ("dsn",)
    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tickvault")
    dsn_file: Path | None = None
    # TLS, for every PostgreSQL client tickvault opens (tickvault.store.db.dsn_of); None keeps
    # what the DSN says (libpq's sslmode etc. in its query), else the driver's default
    sslmode: SslMode | None = None
    sslrootcert: Path | None = None
    sslcert: Path | None = None
    sslkey: Path | None = None
    schema_name: Identifier = Field("tickvault", alias="schema")
    pool_max_size: int = Field(12, ge=2, le=100)
    connect_timeout_s: float = Field(10.0, gt=0)
    connect_retries: int = Field(30, ge=0)
    retry_max_backoff_s: float = Field(5.0, gt=0)
    create_database: bool = True
    migrate_on_start: bool = True
    timescale: Literal["auto", "on", "off"] = "auto"
    partition_interval_days: int = Field(7, ge=1, le=366)
    partitions_ahead: int = Field(2, ge=0, le=52)

    @field_validator("dsn")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        """A postgresql:// URL that parses (its text is never quoted: it holds the password)."""
        try:
            parts = urlsplit(value.get_secret_value())
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError("not a valid URL (postgresql://user:password@host:port/database)") from None
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value


class RedisSettings(Section):
    secret_files = ("url", "password")
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    username: str | None = None
    password: SecretStr | None = None
    url_file: Path | None = None
    password_file: Path | None = None
    ssl_ca_certs: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    group: str = Field("tickvault", min_length=1)
    consumer: str = Field(default_factory=socket.gethostname, min_length=1)
    start_id: str = Field("0", pattern=r"^(\$|0|\d+-\d+)$")
    read_count: int = Field(1000, ge=1)
    block_ms: int = Field(200, ge=1)
    claim_idle_s: float = Field(60.0, gt=0)
    claim_interval_s: float = Field(10.0, gt=0)
    connect_retries: int = Field(30, ge=0)
    retry_max_backoff_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _tls_needs_rediss(self) -> RedisSettings:
        tls_files = self.ssl_ca_certs or self.ssl_certfile or self.ssl_keyfile
        if tls_files and not self.url.get_secret_value().startswith("rediss://"):
            raise ValueError("ssl_* options need a rediss:// url")
        return self


class KafkaSettings(Section):
    secret_files = ("sasl_password", "ssl_password")
    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    group_id: str = Field("tickvault", min_length=1)
    client_id: str = Field(default_factory=lambda: f"tickvault-{socket.gethostname()}", min_length=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = Field(1000, ge=1)
    poll_timeout_ms: int = Field(200, ge=1)
    fetch_max_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_partition_fetch_bytes: int = Field(1024 * 1024, ge=1024)
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    metadata_max_age_ms: int = Field(30_000, ge=1000)
    revoke_timeout_s: float = Field(10.0, gt=0)
    commit_interval_s: float = Field(0.2, ge=0)
    connect_retries: int = Field(30, ge=0)
    retry_max_backoff_s: float = Field(5.0, gt=0)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_password_file: Path | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"{self.security_protocol} needs sasl_username and sasl_password")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        return self
