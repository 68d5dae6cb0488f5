"""The repositories' registry (tickvault.repository): model versions and their aliases,
strategy config versions, backtest runs and their artifacts. Model and backtest content lives
in content-addressed blobs under archive.root; a row names its blob by sha256 and is inserted
only once the blob is complete. Config documents are small and kept in the row, with the
sha256 of their canonical JSON text.

Revision ID: 0008
"""

from __future__ import annotations

from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("backtest_artifacts", "backtests", "strategy_configs", "model_aliases", "models")


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(
        f"""CREATE TABLE {schema}.models (
            name text NOT NULL,
            version text NOT NULL,
            framework text NOT NULL,
            sha256 text NOT NULL,
            size_bytes bigint NOT NULL,
            file_name text,
            metadata jsonb NOT NULL,
            metrics jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            seq bigint GENERATED ALWAYS AS IDENTITY,
            PRIMARY KEY (name, version)
        )"""
    )
    op.execute(f"CREATE INDEX models_sha256 ON {schema}.models (sha256)")
    op.execute(f"CREATE INDEX models_seq ON {schema}.models (name, seq)")
    # an alias points at a stored version: deleting the version needs the alias moved or gone
    op.execute(
        f"""CREATE TABLE {schema}.model_aliases (
            name text NOT NULL,
            alias text NOT NULL,
            version text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, alias),
            FOREIGN KEY (name, version) REFERENCES {schema}.models (name, version)
        )"""
    )
    op.execute(
        f"""CREATE TABLE {schema}.strategy_configs (
            name text NOT NULL,
            version integer NOT NULL CHECK (version >= 1),
            document text NOT NULL,
            sha256 text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, version)
        )"""
    )
    op.execute(
        f"""CREATE TABLE {schema}.backtests (
            run_id text PRIMARY KEY,
            strategy text NOT NULL,
            model_name text,
            model_version text,
            model_sha256 text,
            config_name text,
            config_version integer,
            config_sha256 text,
            exchange text,
            symbols text[],
            "interval" text,
            data_start timestamptz,
            data_end timestamptz,
            metadata jsonb NOT NULL,
            metrics jsonb NOT NULL,
            trades_sha256 text,
            trades_bytes bigint,
            trades_rows bigint,
            equity_sha256 text,
            equity_bytes bigint,
            equity_rows bigint,
            content_sha256 text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"CREATE INDEX backtests_strategy ON {schema}.backtests (strategy, created_at)")
    op.execute(f"CREATE INDEX backtests_created ON {schema}.backtests (created_at)")
    op.execute(
        f"""CREATE TABLE {schema}.backtest_artifacts (
            run_id text NOT NULL REFERENCES {schema}.backtests (run_id) ON DELETE CASCADE,
            name text NOT NULL,
            sha256 text NOT NULL,
            size_bytes bigint NOT NULL,
            PRIMARY KEY (run_id, name)
        )"""
    )
    op.execute(f"CREATE INDEX backtest_artifacts_sha256 ON {schema}.backtest_artifacts (sha256)")


def downgrade() -> None:
    schema = context.config.attributes["schema"]
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
