#!/bin/sh
# Run once by the timescaledb image when its volume is first created (docker-entrypoint-initdb.d):
# the read-only role Grafana's PostgreSQL datasource signs in with, GRAFANA_PG_USER and
# GRAFANA_PG_PASSWORD from docker-compose.yml. It may read, never write, every schema and table
# that the owner, POSTGRES_USER (who runs `tickvault migrate`), creates from now on: the
# migrations' tables, new partitions, kline aggregates.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader="$GRAFANA_PG_USER" -v reader_password="$GRAFANA_PG_PASSWORD" \
    -v owner="$POSTGRES_USER" -v database="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE :"database" TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT ON TABLES TO :"reader";
SQL
