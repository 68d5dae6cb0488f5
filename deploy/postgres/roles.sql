-- tickvault's least-privilege PostgreSQL roles (README "Security"). Run once per database, as a
-- superuser or a role with CREATEROLE that may create schemas in it, with psql:
--
--   psql -v ON_ERROR_STOP=1 -d tickvault \
--        -v writer=tickvault -v writer_password="$WRITER_PASSWORD" \
--        -v reader=tickvault_reader -v reader_password="$READER_PASSWORD" \
--        -v schema=tickvault -f deploy/postgres/roles.sql
--
-- writer: the role of postgres.dsn, for `tickvault migrate` and the daemon. It owns the schema
--   and every table in it (PostgreSQL lets only a table's owner create its partitions, turn it
--   into a hypertable, and drop a rolled partition), and nothing else: no superuser, no
--   CREATEDB, no CREATEROLE, no CREATE on the database, no right in any other schema.
-- reader: dashboards and bots that only read. USAGE on the schema and SELECT on its tables,
--   including every table and partition the writer creates later (default privileges).
-- With TimescaleDB, create the extension in the database first, as a superuser:
--   CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE ROLE :"writer" LOGIN PASSWORD :'writer_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
SELECT current_database() AS database \gset
GRANT CONNECT ON DATABASE :"database" TO :"writer", :"reader";
-- PostgreSQL 15's default, made explicit for older servers: nobody creates in schema public
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"writer";
GRANT USAGE ON SCHEMA :"schema" TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"writer" IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"reader";
