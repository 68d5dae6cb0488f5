"""Which files an import reads, what each holds, and their lines. No database I/O.

A path is a file or a directory (every file under it, sorted by path, whose name tells its
format). The format comes from `--format` or, with `auto`, from the name: `.jsonl`/`.ndjson`
→ JSON Lines; `.parquet` → cold-tier Parquet; `.csv`/`.zip` named as Binance's dumps name
them → Binance klines, trades or aggTrades (`binance.parse_name`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Final, TypeAlias

from tickvault.errors import TickvaultError

FORMATS: Final = ("auto", "jsonl", "binance-klines", "binance-trades", "binance-aggtrades", "parquet")
_SUFFIXES: Final = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "binance",
    ".zip": "binance",
}


class ImportFailed(TickvaultError):
    """A file could not be found, opened or read (not a bad line: those are dead-lettered)."""


SKIP_BYTES: Final = 1 << 20  # read size while skipping the tail of an over-long line
Line: TypeAlias = tuple[int, bytes]  # (line number, 1 for the first; the line without its end)


def expand(paths: list[Path]) -> list[Path]:
    """The files to read, in order: each path given, a directory replaced by the files under
    it whose suffix names a format. Raises ImportFailed for a path that does not exist or a
    directory holding no such file."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)
            if not found:
                raise ImportFailed(f"{path}: no .jsonl, .ndjson, .csv, .zip or .parquet file under it")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise ImportFailed(f"{path}: no such file or directory")
    return out


def format_of(path: Path, given: str) -> str:
    """`given` unless "auto"; else the format its name tells ("jsonl", "parquet" or
    "binance"). Raises ImportFailed when the name tells nothing."""
    if given != "auto":
        return given
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ImportFailed(f"{path}: cannot tell its format from its name; give --format")
    return found


def size_of(path: Path) -> int:
    """The bytes of text a file's lines hold (a zip's members uncompressed), or its size."""
    if path.suffix.lower() == ".zip":
        with _zip(path) as archive:
            return sum(i.file_size for i in archive.infolist() if not i.is_dir())
    return path.stat().st_size


def lines(path: Path, max_line_bytes: int | None = None) -> Iterator[Line]:
    """The lines of a text file, or of every file in a zip archive (numbered on from one
    member to the next; Binance's archives hold one CSV). Line ends (LF or CRLF) removed;
    blank lines skipped but counted. With `max_line_bytes`, memory stays bounded however long
    a line is: a longer line comes as its first max_line_bytes + 1 bytes (the caller refuses
    it by its length) and the rest of it is skipped. Raises ImportFailed when the file cannot
    be read."""
    try:
        number = 0
        for stream in _streams(path):
            if max_line_bytes is None:
                number = yield from _numbered(stream, number)
            else:
                number = yield from _numbered_bounded(stream, number, max_line_bytes)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ImportFailed(f"{path}: cannot be read: {exc}") from exc


def _streams(path: Path) -> Iterator[IO[bytes]]:
    """The file opened for reading, or each member of a zip archive in turn (directories
    skipped); each is closed when the next is asked for."""
    if path.suffix.lower() == ".zip":
        with _zip(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    with archive.open(info) as member:
                        yield member
    else:
        with path.open("rb") as file:
            yield file


def _zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ImportFailed(f"{path}: cannot be read: {exc}") from exc


def _numbered(file: IO[bytes], number: int) -> Generator[Line, None, int]:
    """Yields the lines after `number`; returns the last line's number."""
    for raw in file:
        number += 1
        raw = raw.rstrip(b"\r\n")
        if raw.strip():
            yield number, raw
    return number


def _numbered_bounded(file: IO[bytes], number: int, max_line_bytes: int) -> Generator[Line, None, int]:
    """As `_numbered`, reading at most max_line_bytes + 1 bytes of a line's text at a time."""
    room = max_line_bytes + 3  # one byte past the limit, and a CRLF
    while raw := file.readline(room):
        # a zip member's readline may stop short of both the newline and the limit
        while not raw.endswith(b"\n") and len(raw) < room and (more := file.readline(room - len(raw))):
            raw += more
        number += 1
        if len(raw) >= room and not raw.endswith(b"\n"):  # too long: keep its head, skip its tail
            while (rest := file.readline(SKIP_BYTES)) and not rest.endswith(b"\n"):
                pass
            raw = raw[: max_line_bytes + 1]
        raw = raw.rstrip(b"\r\n")
        if raw.strip():
            yield number, raw
    return number


def blocks(path: Path, size: int) -> Iterator[tuple[int, bytes]]:
    """The file's text (every member of a zip in turn) as blocks of about `size` bytes cut
    after a line end, each with the number of lines before it (numbered as `lines` numbers
    them). Every block ends with b"\\n" (added after a last line that has none). Raises
    ImportFailed when the file cannot be read."""
    try:
        number = 0
        for stream in _streams(path):
            number = yield from _blocks(stream, size, number)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ImportFailed(f"{path}: cannot be read: {exc}") from exc


def _blocks(file: IO[bytes], size: int, number: int) -> Generator[tuple[int, bytes], None, int]:
    rest = b""
    while True:
        data = file.read(size)
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        block, rest = data[: cut + 1], data[cut + 1 :]
        yield number, block
        number += block.count(b"\n")
    if rest:
        yield number, rest + b"\n"
        number += 1
    return number
