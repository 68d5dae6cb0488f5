"""`tickvault import`: bulk backfill from files straight into the store.

Data flow: files (`files.py` finds and opens them) → a reader per format turns each line or
row into the item the daemon's codec would make of it, validated by the same rules
(`jsonl.py`: the native codec; `binance.py`: Binance public data dumps; `parquet.py`: the
cold tier's own Parquet data files) → `load.Loader` batches items per kind, drops what is
already stored when asked (`--only-missing`), and writes with `Store.write`, the daemon's
idempotent writers; bad lines go to dead letters → `command.py` shows progress and the counts.

Versions. Every row stored carries the version of the message that wrote it (its place in
publish order, `tickvault.sources.Message.version`). An imported line or CSV row gets
`(0, n)` with n its line number in its file (1 = the first line), so the import of a file
always gives the same versions: importing it again changes nothing, and within a file a
later line of one key outranks an earlier one, as a later-published message would. Being 0,
they rank before every message the daemon consumed: an import never replaces a candle, a
balance or a signal stored live, but does fill in for an open candle with a closed one. A
fill, whose first-published message wins, keeps an imported copy over a live one of the same
key. Parquet rows from the cold tier keep the version they were stored with (order events
have none: `(0, n)` with n their row number in the file).
"""
