"""The model registry against the real PostgreSQL, on a local root and on S3 (moto's server):
round trips, immutable versions, aliases, integrity checks after a flipped byte, deletes,
cleanup that keeps aliased versions, packages, and bad input."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tarfile
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pyarrow.fs as pafs
import pytest

import tickvault
from tests.helpers import TestEnv
from tickvault.errors import BlobTooLarge, ConfigError, CorruptBlob, NotFound, VersionConflict, VersionInUse
from tickvault.repository.blobs import filesystem
from tickvault.settings import Settings
from tickvault.store import migrate
from tickvault.vault import Vault

ROOTS = ["local", "s3"]
WEIGHTS = bytes(range(256)) * 1000  # 256 kB, not text


def repo_settings(
    env: TestEnv, root: str, tmp_path: Path, s3_endpoint: str | None, **repository: int
) -> Settings:
    """Settings whose archive.root is a local directory or a prefix of the moto bucket."""
    if root == "s3":
        archive = {
            "root": f"s3://tickvault-archive/{env.schema}-repo", "s3_endpoint": s3_endpoint,
            "s3_region": "us-east-1", "s3_access_key_id": "test", "s3_secret_access_key": "test",
        }  # fmt: skip
    else:
        archive = {"root": str(tmp_path / "root")}
    return env.settings(archive=archive, repository=repository)


@pytest.fixture(params=ROOTS)
async def repo(env: TestEnv, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Settings]:
    """Migrated settings on a local root or on S3 (each test runs on both)."""
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    settings = repo_settings(env, request.param, tmp_path, endpoint)
    await migrate.upgrade(settings.postgres)
    yield settings


def blob_files(settings: Settings, area: str = "models") -> dict[str, bytes]:
    """Every file under `<root>/<schema>/<area>` (path relative to it → content)."""
    fs, root = filesystem(settings)
    base = f"{root}/{settings.postgres.schema_name}/{area}"
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    out = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as stream:
                out[info.path.removeprefix(base + "/")] = stream.read()
    return out


def flip_byte(settings: Settings, sha256: str, at: int = 1000, area: str = "models") -> None:
    fs, root = filesystem(settings)
    path = f"{root}/{settings.postgres.schema_name}/{area}/sha256/{sha256[:2]}/{sha256}"
    with fs.open_input_stream(path) as stream:
        data = bytearray(stream.read())
    data[at] ^= 0x01
    with fs.open_output_stream(path) as out:
        out.write(bytes(data))


async def test_models_round_trip_by_version_alias_and_latest(repo: Settings, tmp_path: Path) -> None:
    onnx = tmp_path / "signal.onnx"
    onnx.write_bytes(WEIGHTS[::-1])
    meta = {"features": ["rsi", "ema_20"], "trained_on": {"start": "2025-01-01", "rows": 1_000_000}}
    async with Vault.connect(repo) as v:
        first = await v.save_model(
            "signal", "1", WEIGHTS, framework="xgboost", metadata=meta, metrics={"auc": 0.71}
        )
        second = await v.save_model(
            "signal", "2", onnx, framework="onnx", metrics={"auc": Decimal("0.7350"), "trees": 400}
        )
        await v.save_model("other", "2026.01", b"tiny", framework="sklearn")
        assert first.sha256 == hashlib.sha256(WEIGHTS).hexdigest() and first.size_bytes == len(WEIGHTS)
        assert first.file_name is None and second.file_name == "signal.onnx"
        assert first.metadata == meta and first.metrics == {"auc": Decimal("0.71")}
        assert second.metrics == {"auc": Decimal("0.735"), "trees": 400}  # exact, canonical
        assert await v.load_model("signal", "1") == WEIGHTS
        assert await v.load_model("signal") == onnx.read_bytes()  # latest
        await v.set_model_alias("signal", "live", "1")
        await v.set_model_alias("signal", "shadow", "2")
        assert await v.load_model("signal", alias="live") == WEIGHTS
        moved = await v.set_model_alias("signal", "live", "2")  # an alias moves
        assert moved.aliases == ("live", "shadow")
        assert (await v.model("signal", alias="live")).version == "2"
        got = await v.download_model("signal", tmp_path / "out.bin", "1")
        assert (tmp_path / "out.bin").read_bytes() == WEIGHTS and got == await v.model("signal", "1")
        assert [(m.name, m.version) for m in await v.models()] == [
            ("other", "2026.01"),
            ("signal", "2"),
            ("signal", "1"),
        ]
        assert [m.version for m in await v.models("signal", framework="onnx")] == ["2"]
        assert [m.version for m in await v.models(alias="shadow")] == ["2"]
        assert await v.models(since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == []
        assert len(await v.models(limit=1)) == 1
        await v.remove_model_alias("signal", "shadow")
        assert (await v.model("signal", "2")).aliases == ("live",)
    # content-addressed: one blob per distinct content, at <root>/<schema>/models/sha256/<2>/<64>
    files = blob_files(repo)
    assert {f"sha256/{s[:2]}/{s}" for s in (first.sha256, second.sha256)} <= set(files)
    assert len(files) == 3 and all(hashlib.sha256(data).hexdigest() == p[-64:] for p, data in files.items())


async def test_versions_are_immutable(repo: Settings) -> None:
    async with Vault.connect(repo) as v:
        saved = await v.save_model(
            "m", "1", b"weights", framework="onnx", metadata={"a": 1}, metrics={"f1": 0.5}
        )
        again = await v.save_model(
            "m", "1", b"weights", framework="onnx", metadata={"a": 1}, metrics={"f1": 0.50}
        )
        assert again == saved  # the same content again: nothing changes
        with pytest.raises(
            VersionConflict, match=r"model m version 1 is already stored with other content \(sha256"
        ):
            await v.save_model(
                "m", "1", b"weights!", framework="onnx", metadata={"a": 1}, metrics={"f1": 0.5}
            )
        with pytest.raises(VersionConflict, match="other framework, metadata"):
            await v.save_model(
                "m", "1", b"weights", framework="pytorch", metadata={"a": 2}, metrics={"f1": 0.5}
            )
        assert await v.load_model("m", "1") == b"weights"
    assert len(blob_files(repo)) == 1  # the conflicting saves stored nothing


async def test_a_flipped_byte_is_detected_and_never_returned(repo: Settings, tmp_path: Path) -> None:
    async with Vault.connect(repo) as v:
        bad = await v.save_model("m", "1", WEIGHTS, framework="onnx")
        await v.save_model("m", "2", WEIGHTS[1:], framework="onnx")
        flip_byte(repo, bad.sha256)
        with pytest.raises(CorruptBlob, match=f"model m version 1: blob .*{bad.sha256} is corrupt: sha256 "):
            await v.load_model("m", "1")
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(CorruptBlob):
            await v.download_model("m", out / "m.bin", "1")
        with pytest.raises(CorruptBlob):
            await v.package_model("m", out / "m.tar.gz", "1")
        assert list(out.iterdir()) == []  # no file, no partial
        checks = await v.verify_models("m")
        assert [(c.version, c.ok) for c in checks] == [("2", True), ("1", False)]
        assert f"registered {bad.sha256} ({len(WEIGHTS)} bytes)" in (checks[1].problem or "")
        assert await v.load_model("m", "2") == WEIGHTS[1:]


async def test_a_missing_blob_is_corrupt(repo: Settings) -> None:
    async with Vault.connect(repo) as v:
        saved = await v.save_model("m", "1", b"abc", framework="onnx")
        fs, root = filesystem(repo)
        fs.delete_file(f"{root}/{repo.postgres.schema_name}/models/sha256/{saved.sha256[:2]}/{saved.sha256}")
        with pytest.raises(CorruptBlob, match="is missing"):
            await v.load_model("m")
        assert not (await v.verify_models("m", "1"))[0].ok


async def test_delete_refuses_an_aliased_version_unless_forced(repo: Settings) -> None:
    async with Vault.connect(repo) as v:
        one = await v.save_model("m", "1", b"same", framework="onnx")
        await v.save_model("m", "2", b"same", framework="onnx")  # the same blob
        three = await v.save_model("m", "3", b"other", framework="onnx")
        await v.set_model_alias("m", "live", "3")
        with pytest.raises(VersionInUse, match="model m version 3 is aliased as live"):
            await v.delete_model("m", "3")
        await v.delete_model("m", "1")
        assert f"sha256/{one.sha256[:2]}/{one.sha256}" in blob_files(repo)  # version 2 still needs it
        await v.delete_model("m", "3", force=True)
        assert f"sha256/{three.sha256[:2]}/{three.sha256}" not in blob_files(repo)
        with pytest.raises(NotFound, match="no alias live of model m; aliases: none"):
            await v.model("m", alias="live")
        with pytest.raises(NotFound, match="no version 3 of model m; latest versions: 2"):
            await v.delete_model("m", "3")


async def test_cleanup_keeps_aliased_versions_and_their_blobs(repo: Settings) -> None:
    async with Vault.connect(repo) as v:
        for n in range(1, 7):
            await v.save_model("m", str(n), f"weights {n}".encode(), framework="onnx")
        await v.save_model("keep", "1", b"weights 1", framework="onnx")  # shares version 1's blob
        await v.set_model_alias("m", "live", "2")
        await v.set_model_alias("m", "shadow", "1")
        assert (await v.cleanup_models(keep_last=2, older_than="1d")).versions == ()  # all too new
        dry = await v.cleanup_models("m", keep_last=2, dry_run=True)
        assert dry.versions == (("m", "4"), ("m", "3")) and dry.blobs == 2
        assert len(await v.models("m")) == 6
        done = await v.cleanup_models("m", keep_last=2)
        assert done == dry
        assert [m.version for m in await v.models("m")] == ["6", "5", "2", "1"]
        assert [m.version for m in await v.models("keep")] == ["1"]
        for n in (1, 2, 5, 6):
            assert await v.load_model("m", str(n)) == f"weights {n}".encode()
        assert len(blob_files(repo)) == 4
        await v.remove_model_alias("m", "shadow")
        gone = await v.cleanup_models(keep_last=1, older_than=dt.timedelta(0))
        assert gone.versions == (("m", "5"), ("m", "1"))  # live (2) stays; keep/1 is its model's newest
        assert await v.load_model("keep", "1") == b"weights 1"  # the shared blob stays
        assert len(blob_files(repo)) == 3


async def test_a_package_unpacks_to_the_model_and_its_manifest(repo: Settings, tmp_path: Path) -> None:
    model_file = tmp_path / "policy.pt"
    model_file.write_bytes(WEIGHTS)
    async with Vault.connect(repo) as v:
        await v.save_model("policy", "7", model_file, framework="pytorch", metadata={"lr": Decimal("0.0003")})
        await v.set_model_alias("policy", "live", "7")
        await v.package_model("policy", tmp_path / "policy.tar.gz", alias="live")
    with tarfile.open(tmp_path / "policy.tar.gz", "r:gz") as tar:
        assert sorted(tar.getnames()) == ["policy-7/manifest.json", "policy-7/policy.pt"]
        tar.extractall(tmp_path / "unpacked", filter="data")
    manifest = json.loads((tmp_path / "unpacked/policy-7/manifest.json").read_text(), parse_float=Decimal)
    unpacked = (tmp_path / "unpacked/policy-7/policy.pt").read_bytes()
    assert unpacked == WEIGHTS
    assert manifest["sha256"] == hashlib.sha256(unpacked).hexdigest() and manifest["size_bytes"] == len(
        WEIGHTS
    )
    keys = ("format", "name", "version", "framework", "file", "aliases", "metadata")
    assert {k: manifest[k] for k in keys} == {
        "format": "tickvault-model-package/1", "name": "policy", "version": "7", "framework": "pytorch",
        "file": "policy.pt", "aliases": ["live"], "metadata": {"lr": Decimal("0.0003")},
    }  # fmt: skip


BAD_NAMES = [
    "../evil",
    "/etc/passwd",
    "a/b",
    "..",
    ".hidden",
    "-x",
    "a\x00b",
    "a\nb",
    "tab\there",
    "",
    "x" * 129,
    "é",
]


@pytest.mark.parametrize("bad", BAD_NAMES)
async def test_names_that_could_escape_are_refused(env: TestEnv, tmp_path: Path, bad: str) -> None:
    settings = repo_settings(env, "local", tmp_path, None)
    await migrate.upgrade(settings.postgres)
    async with Vault.connect(settings) as v:
        with pytest.raises(ConfigError, match="invalid model name"):
            await v.save_model(bad, "1", b"x", framework="onnx")
        with pytest.raises(ConfigError, match="invalid model version"):
            await v.save_model("m", bad, b"x", framework="onnx")
        with pytest.raises(ConfigError, match="invalid alias"):
            await v.load_model("m", alias=bad)
        with pytest.raises(ConfigError, match="invalid config name"):
            await v.save_strategy_config(bad, {"a": 1})
        assert await v.models() == []
    assert not (tmp_path / "root").exists()  # nothing was written anywhere


async def test_oversized_blobs_are_refused_and_leave_nothing(env: TestEnv, tmp_path: Path) -> None:
    settings = repo_settings(env, "local", tmp_path, None, max_blob_bytes=1000, max_config_bytes=64)
    await migrate.upgrade(settings.postgres)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1001)
    async with Vault.connect(settings) as v:
        await v.save_model("m", "1", b"x" * 1000, framework="onnx")  # at the limit
        with pytest.raises(
            BlobTooLarge, match=r"blob of 1001 bytes exceeds the 1000-byte limit \(repository"
        ):
            await v.save_model("m", "2", b"x" * 1001, framework="onnx")
        with pytest.raises(BlobTooLarge, match="blob of more than 1000 bytes"):
            await v.save_model("m", "2", big, framework="onnx")
        with pytest.raises(
            BlobTooLarge, match=r"metadata of 72 bytes exceeds the 64-byte limit \(repository"
        ):
            await v.save_model("m", "2", b"x", framework="onnx", metadata={"notes": "n" * 60})
        assert [m.version for m in await v.models()] == ["1"]
    assert list(blob_files(settings)) == [f"sha256/{hashlib.sha256(b'x' * 1000).hexdigest()[:2]}/"
                                          f"{hashlib.sha256(b'x' * 1000).hexdigest()}"]  # fmt: skip


async def test_unknown_models_versions_aliases_and_files_are_named(repo: Settings, tmp_path: Path) -> None:
    async with Vault.connect(repo) as v:
        with pytest.raises(NotFound, match="no model named nobody"):
            await v.load_model("nobody")
        await v.save_model("m", "1", b"x", framework="onnx")
        with pytest.raises(NotFound, match="no version 9 of model m; latest versions: 1"):
            await v.load_model("m", "9")
        with pytest.raises(NotFound, match="no alias live of model m; aliases: none"):
            await v.load_model("m", alias="live")
        with pytest.raises(NotFound, match="no version 9 of model m"):
            await v.set_model_alias("m", "live", "9")
        with pytest.raises(NotFound, match="no alias live of model m"):
            await v.remove_model_alias("m", "live")
        with pytest.raises(NotFound, match=r"no file .*missing\.onnx"):
            await v.save_model("m", "2", tmp_path / "missing.onnx", framework="onnx")
        with pytest.raises(ConfigError, match="not both"):
            await v.model("m", "1", alias="live")


async def test_the_sync_vault_saves_and_loads_models(env: TestEnv, tmp_path: Path) -> None:
    settings = repo_settings(env, "local", tmp_path, None)
    await migrate.upgrade(settings.postgres)
    with tickvault.connect(settings) as v:
        v.save_model("m", "1", b"sync", framework="onnx")
        v.set_model_alias("m", "live", "1")
        assert v.load_model("m", alias="live") == b"sync"
        assert v.cleanup_models(keep_last=0).versions == ()
