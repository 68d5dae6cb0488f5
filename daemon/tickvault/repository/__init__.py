"""The repositories next to the market data: ML models, strategy configs and backtest runs.

    values.py    what names and JSON documents are accepted (NAME_PATTERN), canonical JSON
    blobs.py     content-addressed blobs (sha256) under archive.root, local or S3
    base.py      what the mixins share: blob stores, the blob lock
    models.py    save, look up, load, list and alias model versions
    upkeep.py    verify, delete, clean up and package model versions
    configs.py   versioned strategy config documents and their diffs
    backtests.py backtest runs: metrics, trades and equity as Parquet, artifacts, lineage
    backtest_upkeep.py  delete runs, sweep orphan blobs
    command.py   the `tickvault models|configs|backtests` commands

The registry is in PostgreSQL (migration 0008); `Vault` gets the methods through the
`BacktestUpkeep` mixin, which brings the others.
"""
