"""Exports: a time table over a range (`Vault.export`, `tickvault export`) or an Arrow result
in hand (`Vault.export_table`) to CSV, JSON Lines, Parquet or Excel, in bounded memory.

`tables` says what can be exported and with which filters, `pages` reads the rows window by
window over both tiers, `convert` turns decimals and times into exact text, `writers` (and
`xlsx`, the optional extra) write the file atomically, `methods` holds the Vault methods and
`command` the CLI.
"""
