"""Secrets from `<name>_file` settings, and passwords masked in URLs (tickvault.credentials)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickvault.credentials import redact_url
from tickvault.errors import ConfigError
from tickvault.settings import load_settings

SECRET = "pw-Yx83-in-a-file"


def test_every_secret_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret"
    path.write_text(f"  {SECRET}\n")
    (tmp_path / "dsn").write_text(f"postgresql://app:{SECRET}@db/ticks\n")
    (tmp_path / "url").write_text(f"redis://bot:{SECRET}@cache:6379/0\n")
    monkeypatch.setenv("TICKVAULT_POSTGRES__DSN_FILE", str(tmp_path / "dsn"))
    monkeypatch.setenv("TICKVAULT_REDIS__URL_FILE", str(tmp_path / "url"))
    for name in ("REDIS__PASSWORD", "KAFKA__SASL_PASSWORD", "KAFKA__SSL_PASSWORD",
                 "ARCHIVE__S3_ACCESS_KEY_ID", "ARCHIVE__S3_SECRET_ACCESS_KEY"):  # fmt: skip
        monkeypatch.setenv(f"TICKVAULT_{name}_FILE", str(path))
    s = load_settings()
    assert s.postgres.dsn.get_secret_value() == f"postgresql://app:{SECRET}@db/ticks"
    assert s.redis.url.get_secret_value() == f"redis://bot:{SECRET}@cache:6379/0"
    for value in (s.redis.password, s.kafka.sasl_password, s.kafka.ssl_password,
                  s.archive.s3_access_key_id, s.archive.s3_secret_access_key):  # fmt: skip
        assert value is not None and value.get_secret_value() == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read"), ("", "is empty"), ("\n \n", "is empty"), ("x" * 70_000, "larger than")],
)
def test_a_bad_secret_file_is_one_error_that_never_shows_its_content(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "dsn"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"^invalid setting postgres: .*dsn_file: .*{expected}") as caught:
        load_settings(postgres={"dsn_file": str(path)})
    assert str(path) in str(caught.value)
    assert "xxxx" not in str(caught.value)


def test_a_value_and_its_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text(f"postgresql://app:{SECRET}@db/ticks")
    with pytest.raises(ConfigError, match="give dsn or dsn_file, not both") as caught:
        load_settings(postgres={"dsn": "postgresql://other@db/x", "dsn_file": str(tmp_path / "dsn")})
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/ticks", "postgresql://app:***@db:5432/ticks"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://app@db/ticks", "postgresql://app@db/ticks"),
        ("postgresql://app:s3cret@[::1/x", "***"),
    ],
)
def test_redact_url_masks_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
