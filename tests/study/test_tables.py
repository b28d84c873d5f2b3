"""Table schemas: built once, checked on read and write, errors naming file and column."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hitkit.study.files import atomic_write
from hitkit.study.manifest import MANIFEST
from hitkit.study.responses import RESPONSES
from hitkit.study.tables import TableError, read_table, write_table
from hitkit.study.trials import TRIALS

FACTORS = ["architecture", "training"]


def trial_row(i: int) -> dict:
    return {
        "trial_id": f"t{i}", "hit_id": "h0", "position": i, "task": "2afc", "kind": "main",
        "query": [f"iri{i}"], "options": ["a", "b"], "answer": [i % 2], "chance": 0.5,
        "repeat_of": None, "model": "m", "loss": "reg_free",
        "architecture": "resnet18", "training": "standard",
    }


def test_round_trip_keeps_types(tmp_path: Path):
    table = TRIALS.to_table([trial_row(i) for i in range(3)], FACTORS)
    path = write_table(table, tmp_path / "trials.parquet")
    back = read_table(path, TRIALS, FACTORS)
    assert back.schema.equals(TRIALS.arrow(FACTORS))
    assert back.column("answer").to_pylist() == [[0], [1], [0]]


def test_missing_column_names_file_and_column(tmp_path: Path):
    table = TRIALS.to_table([trial_row(0)], FACTORS).drop_columns(["chance"])
    path = tmp_path / "trials.parquet"
    pq.write_table(table, path)
    with pytest.raises(TableError, match=rf"{path}: missing column\(s\) chance"):
        read_table(path, TRIALS, FACTORS)


def test_wrong_type_names_the_column(tmp_path: Path):
    table = TRIALS.to_table([trial_row(0)], FACTORS)
    bad = table.set_column(table.schema.get_field_index("position"), "position", pa.array(["first"]))
    path = tmp_path / "trials.parquet"
    pq.write_table(bad, path)
    with pytest.raises(TableError, match=r"column 'position' has type string, expected int32"):
        read_table(path, TRIALS, FACTORS)


def test_compatible_types_are_cast(tmp_path: Path):
    table = TRIALS.to_table([trial_row(0)], FACTORS)
    wider = table.set_column(table.schema.get_field_index("position"), "position", pa.array([0], pa.int64()))
    path = tmp_path / "trials.parquet"
    pq.write_table(wider, path)
    assert read_table(path, TRIALS, FACTORS).schema.field("position").type == pa.int32()


def test_null_in_required_column_is_an_error():
    row = trial_row(0) | {"hit_id": None}
    with pytest.raises(TableError, match=r"column 'hit_id' has 1 empty value"):
        TRIALS.to_table([row], FACTORS)


def test_unknown_column_must_be_added_to_the_schema_first():
    with pytest.raises(TableError, match=r"column\(s\) colour are not in the schema; add them to hitkit.study.trials"):
        TRIALS.to_table({**{k: [v] for k, v in trial_row(0).items()}, "colour": ["red"]}, FACTORS)


def test_extra_columns_in_a_file_are_kept(tmp_path: Path):
    table = TRIALS.to_table([trial_row(0)], FACTORS).append_column("added_later", pa.array([1]))
    path = write_table(table, tmp_path / "t.parquet")
    assert "added_later" in read_table(path, TRIALS, FACTORS).column_names


def test_factor_names_may_not_shadow_fixed_columns():
    with pytest.raises(TableError, match="clash with fixed columns"):
        RESPONSES.arrow(["model"])


def test_missing_file_names_the_writer(tmp_path: Path):
    with pytest.raises(TableError, match="written by hitkit.study.manifest"):
        read_table(tmp_path / "manifest.parquet", MANIFEST)


def test_corrupt_file_is_named(tmp_path: Path):
    path = tmp_path / "responses.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(TableError, match=rf"{path}: not a readable Parquet file"):
        read_table(path, RESPONSES)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def fail(tmp: Path):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
