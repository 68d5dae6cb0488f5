"""The committed schemas/ must equal what `tickvault schemas` generates, and its examples decode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tickvault.cli import main
from tickvault.codecs.native import decode
from tickvault.records import KINDS, RECORD_TYPES

COMMITTED = Path(__file__).resolve().parents[2] / "schemas"
REGENERATE = "run `tickvault schemas` (from the repository root) and commit schemas/"


def relative_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemas")
    assert main(["schemas", "--out", str(out)]) == 0
    return out


def test_every_kind_has_a_schema_and_an_example(generated: Path) -> None:
    expected = {f"{k}.schema.json" for k in KINDS} | {f"examples/{k}.json" for k in KINDS}
    assert relative_files(generated) == expected


def test_committed_files_match_generated(generated: Path) -> None:
    assert COMMITTED.is_dir(), f"schemas/ is missing; {REGENERATE}"
    missing = relative_files(generated) - relative_files(COMMITTED)
    assert not missing, f"schemas/ lacks {sorted(missing)}; {REGENERATE}"
    extra = {f for f in relative_files(COMMITTED) - relative_files(generated) if f.endswith(".json")}
    assert not extra, f"schemas/ has stale files {sorted(extra)}; remove them and {REGENERATE}"
    for name in sorted(relative_files(generated)):
        fresh = (generated / name).read_text()
        committed = (COMMITTED / name).read_text()
        assert committed == fresh, f"schemas/{name} is out of date; {REGENERATE}"


@pytest.mark.parametrize("kind", KINDS)
def test_committed_example_decodes(kind: str) -> None:
    payload = (COMMITTED / "examples" / f"{kind}.json").read_bytes()
    record = decode(payload, kind)
    assert type(record) is RECORD_TYPES[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_committed_schema_describes_its_kind(kind: str) -> None:
    schema = json.loads((COMMITTED / f"{kind}.schema.json").read_text())
    assert schema["$id"].endswith(f"/{kind}.schema.json")
    assert schema["properties"]["kind"]["const"] == kind
    example = json.loads((COMMITTED / "examples" / f"{kind}.json").read_text())
    assert set(schema["required"]) <= set(example)
    assert set(example) <= set(schema["properties"])
