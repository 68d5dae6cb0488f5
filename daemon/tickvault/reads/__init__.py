"""Reads over both tiers: PostgreSQL (hot) and the Iceberg cold tables, as one Arrow table.

`columns` holds the result schemas, `hot` and `cold` read each tier into Arrow, `tiers`
combines them (deduplicated by key under the roll's rules, in time order, limited).
"""
