#!/bin/sh
# Run once by the timescaledb image when its volume is first created (docker-entrypoint-initdb.d),
# after the image's own scripts have created the database and TimescaleDB in it, as the
# superuser POSTGRES_USER: tickvault's least-privilege roles (deploy/postgres/roles.sql,
# mounted on /tickvault/roles.sql). TICKVAULT_PG_USER is the writer that `tickvault migrate`
# and the daemon sign in as: it owns the schema tickvault and what is in it, nothing else.
# GRAFANA_PG_USER is the read-only role Grafana's PostgreSQL datasource signs in with: it
# reads every table the writer creates, now and later, and writes none.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v writer="$TICKVAULT_PG_USER" -v writer_password="$TICKVAULT_PG_PASSWORD" \
    -v reader="$GRAFANA_PG_USER" -v reader_password="$GRAFANA_PG_PASSWORD" \
    -v schema=tickvault -f "${TICKVAULT_ROLES_SQL:-/tickvault/roles.sql}"
