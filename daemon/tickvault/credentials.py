"""Secrets: read from files (`<name>_file` settings), and kept out of what tickvault prints.

Every secret setting (`postgres.dsn`, `redis.url`, `redis.password`, `kafka.sasl_password`,
`kafka.ssl_password`, `archive.s3_access_key_id`, `archive.s3_secret_access_key`) is a
pydantic SecretStr, which prints as `**********`, and may instead be given as a file:
`postgres.dsn_file = "/run/secrets/dsn"` (or `TICKVAULT_POSTGRES__DSN_FILE`), whose content,
less surrounding whitespace, becomes the value. Giving both the value and its file is an error.

`redact_url` masks the password of a URL before it is shown (the dev banner, messages).
No function here reads the environment: settings.py hands over what it was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

MASK: Final = "***"
MAX_SECRET_FILE_BYTES: Final = 64 * 1024  # a DSN or a key: anything larger is the wrong file


def read_secret_files(data: Any, names: tuple[str, ...]) -> Any:
    """`data` (a settings section's raw input) with each `<name>_file` in `names` replaced by
    `<name>`, the file's stripped text. Raises ValueError naming the setting and the path,
    never the content, when the file cannot be read, is empty or too large, or when both
    `<name>` and `<name>_file` are given."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name in names:
        path = out.pop(f"{name}_file", None)
        if path is None:
            continue
        if out.get(name) is not None:
            raise ValueError(f"give {name} or {name}_file, not both")
        out[name] = _read(f"{name}_file", Path(path))
    return out


def _read(setting: str, path: Path) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{setting}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = raw.decode().strip()
    except UnicodeDecodeError:
        raise ValueError(f"{setting}: {path} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{setting}: {path} is empty")
    return text


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***` (scheme://user:***@host/…); unchanged when it
    holds none. A URL that does not parse comes back as `***` whole: it may hold anything."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if not password:
        return url
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hosts}"))
