"""A crash mid-save leaves nothing half-written: a save process killed while its blob streams
(local root and S3) leaves no registry row and no blob under a checksum name, and a save whose
PostgreSQL connection drops between the blob and the row leaves no row, only a complete
unreferenced blob; cleanup removes what either left. The model comes from a named pipe the
test feeds, so the kill and the drop land exactly mid-save."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import TestEnv, wait_until
from tests.integration.test_models import blob_files, repo_settings
from tickvault.errors import StoreError
from tickvault.repository.blobs import CHUNK_BYTES
from tickvault.settings import Settings
from tickvault.store import migrate
from tickvault.vault import Vault

FIRST = b"\x01" * (CHUNK_BYTES + 4096)  # one whole chunk reaches the blob store, then the pipe waits
REST = b"\x02" * 4096
SAVE = """
import asyncio, sys
from tickvault.vault import Vault

async def main():
    async with Vault.connect() as v:
        await v.save_model("m", "1", sys.argv[1], framework="onnx")

asyncio.run(main())
"""


def _open_writer(fifo: Path) -> int:
    return os.open(fifo, os.O_WRONLY)  # blocks until the save opens the pipe to read


async def feed(fifo: Path, data: bytes) -> int:
    fd = await asyncio.wait_for(asyncio.to_thread(_open_writer, fifo), 60)
    await asyncio.to_thread(os.write, fd, data)
    return fd


def start_save(fifo: Path, environ: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process saving the model that `fifo` delivers, configured by `environ`."""
    return subprocess.Popen([sys.executable, "-c", SAVE, str(fifo)], env=environ, stderr=subprocess.PIPE)


def uploaded_parts(endpoint: str, prefix: str) -> list[int]:
    """The sizes of the parts of the multipart uploads in progress under `prefix`."""
    import boto3  # moto's own dependency: only the tests read the bucket this way

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    uploads = client.list_multipart_uploads(Bucket="tickvault-archive", Prefix=prefix).get("Uploads", [])
    sizes = []
    for upload in uploads:
        parts = client.list_parts(Bucket="tickvault-archive", Key=upload["Key"], UploadId=upload["UploadId"])
        sizes += [part["Size"] for part in parts.get("Parts", [])]
    return sizes


async def registered(settings: Settings) -> int:
    async with Vault.connect(settings) as v:
        return len(await v.models())


@pytest.mark.parametrize("root", ["local", "s3"])
async def test_a_save_killed_mid_blob_leaves_no_row_and_no_blob(
    env: TestEnv, tmp_path: Path, root: str, request: pytest.FixtureRequest
) -> None:
    endpoint = request.getfixturevalue("s3_endpoint") if root == "s3" else None
    settings = repo_settings(env, root, tmp_path, endpoint)
    await migrate.upgrade(settings.postgres)
    fifo = tmp_path / "model.pipe"
    os.mkfifo(fifo)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKVAULT_")}
    environ |= env.environ(archive=settings.archive.model_dump(exclude_none=True, mode="json"))
    environ |= {
        "TICKVAULT_ARCHIVE__S3_ACCESS_KEY_ID": "test", "TICKVAULT_ARCHIVE__S3_SECRET_ACCESS_KEY": "test",
    } if root == "s3" else {}  # fmt: skip
    proc = start_save(fifo, environ)
    fd = None
    try:
        fd = await feed(fifo, FIRST if root == "local" else FIRST * 3)

        async def streaming() -> bool:  # local: a chunk is in the temporary file; S3: parts are uploaded
            if root == "local":
                return any(len(data) >= CHUNK_BYTES for data in blob_files(settings).values())
            assert endpoint is not None
            return bool(uploaded_parts(endpoint, f"{env.schema}-repo/"))

        await wait_until(streaming, timeout_s=60)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
        assert proc.stderr is not None
        proc.stderr.close()
        if fd is not None:
            os.close(fd)
    left = blob_files(settings)
    assert not [p for p in left if p.startswith("sha256/")]  # nothing under a checksum name
    assert all(p.startswith("tmp/") for p in left)
    if root == "s3":
        assert left == {}  # an upload never completed is no object at all
    assert await registered(settings) == 0
    async with Vault.connect(settings) as v:
        swept = await v.cleanup_models()
    assert (swept.versions, swept.blobs, swept.temp_files) == ((), 0, len(left))
    assert blob_files(settings) == {}


async def test_a_connection_dropped_between_blob_and_row_leaves_no_row(env: TestEnv, tmp_path: Path) -> None:
    settings = repo_settings(env, "local", tmp_path, None)
    await migrate.upgrade(settings.postgres)
    fifo = tmp_path / "model.pipe"
    os.mkfifo(fifo)
    async with Vault.connect(settings) as v:
        save = asyncio.ensure_future(v.save_model("m", "1", fifo, framework="onnx"))
        fd = await feed(fifo, FIRST)
        try:

            async def streaming() -> bool:
                return any(len(data) >= CHUNK_BYTES for data in blob_files(settings).values())

            await wait_until(streaming, timeout_s=60)
            # the save holds the blob lock on its connection: end that backend, as a failover would
            conn = await asyncpg.connect(env.dsn)
            try:
                ended = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND mode = 'ShareLock' AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                )
            finally:
                await conn.close()
            assert ended == 1
            os.write(fd, REST)
        finally:
            os.close(fd)
        with pytest.raises(StoreError):
            await save
        assert await v.models() == []
    left = blob_files(settings)
    sha = hashlib.sha256(FIRST + REST).hexdigest()
    assert list(left) == [f"sha256/{sha[:2]}/{sha}"]  # complete, and no row names it
    assert hashlib.sha256(left[f"sha256/{sha[:2]}/{sha}"]).hexdigest() == sha
    async with Vault.connect(settings) as v:
        swept = await v.cleanup_models()
        assert (swept.blobs, swept.temp_files) == (1, 0)
        saved = await v.save_model("m", "1", FIRST + REST, framework="onnx")  # a retry succeeds
        assert saved.sha256 == sha and await v.load_model("m", "1") == FIRST + REST
