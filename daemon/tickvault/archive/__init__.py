"""The cold tier: old partitions rolled to Apache Iceberg tables of Parquet files, verified,
then dropped from PostgreSQL. `roller` runs a round, `table` is the cold layout, `hot` the
PostgreSQL side."""
