"""The Parquet result table: atomic parts, dedupe, compaction, keys."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from expreg.experiments.store import ResultStore, task_key


def rows(keys, extra=0.0):
    return [
        {"key": k, "experiment": "x-v1", "config_hash": "h", "seed": i, "value": i + extra, "curve": [1.0, 0.5 * i]}
        for i, k in enumerate(keys)
    ]


def test_append_read_compact_roundtrip(tmp_path):
    store = ResultStore(tmp_path / "x")
    assert len(store.read()) == 0 and store.done_keys() == set()
    store.append(rows(["a", "b"]))
    store.append(rows(["c"]))
    assert store.done_keys() == {"a", "b", "c"}
    before = store.read().sort_values("key").reset_index(drop=True)
    store.compact()
    assert not list(store.parts_dir.glob("*.parquet"))
    after = store.read().sort_values("key").reset_index(drop=True)
    assert after[["key", "value"]].equals(before[["key", "value"]])
    assert [list(c) for c in after.curve] == [[1.0, 0.0], [1.0, 0.5], [1.0, 0.0]]
    store.append(rows(["d"]))
    store.compact()
    assert pq.read_table(store.table_path).num_rows == 4


def test_duplicates_from_an_interrupted_compaction_are_dropped(tmp_path):
    store = ResultStore(tmp_path)
    store.append(rows(["a", "b"]))
    store.compact()
    store.append(rows(["a"], extra=100.0))  # as if the parts were not yet deleted when the process died
    df = store.read()
    assert sorted(df.key) == ["a", "b"]
    assert float(df[df.key == "a"].value.iloc[0]) == 0.0  # the compacted copy wins


def test_leftover_temporary_files_are_ignored(tmp_path):
    store = ResultStore(tmp_path)
    store.append(rows(["a"]))
    (store.parts_dir / ".part-deadbeef.parquet.x.tmp").write_bytes(b"PAR1 half written")
    assert store.done_keys() == {"a"} and len(store.read()) == 1


def test_task_key_depends_on_every_part():
    base = task_key("width", "abc", {"n": 8, "m": 4}, 0)
    assert base == task_key("width", "abc", {"m": 4, "n": 8}, 0)  # parameter order does not matter
    others = [
        task_key("lazy", "abc", {"n": 8, "m": 4}, 0),
        task_key("width", "abd", {"n": 8, "m": 4}, 0),
        task_key("width", "abc", {"n": 9, "m": 4}, 0),
        task_key("width", "abc", {"n": 8, "m": 4}, 1),
    ]
    assert len({base, *others}) == 5


def test_append_nothing_writes_nothing(tmp_path):
    assert ResultStore(tmp_path).append([]) is None
    assert not (tmp_path / "parts").exists()


def test_rows_with_different_columns_keep_every_value_in_one_part(tmp_path):
    # pyarrow's Table.from_pylist takes the columns of the first row only; a later row's extra column must survive
    store = ResultStore(tmp_path)
    store.append([{"key": "a", "seed": 0}, {"key": "b", "seed": 1, "bound": 2.5}])
    df = store.read().set_index("key")
    assert df.loc["b", "bound"] == 2.5 and df.loc["a", "bound"] != df.loc["a", "bound"]  # NaN where the row had none
    assert list(df.seed) == [0, 1]


def test_every_unreadable_part_is_named_in_one_message(tmp_path):
    from expreg.core.errors import CheckpointError

    store = ResultStore(tmp_path)
    good = store.append(rows(["a"]))
    bad1 = store.parts_dir / "part-0bad.parquet"
    bad1.write_bytes(b"PAR1 not a parquet file")
    bad2 = store.append(rows(["b"]))
    bad2.write_bytes(bad2.read_bytes()[:-20])  # a copy cut short
    for reader in (store.read, store.done_keys):
        with pytest.raises(CheckpointError) as info:
            reader()
        message = str(info.value)
        assert (
            "2 result file(s)" in message and str(bad1) in message and str(bad2) in message and str(good) not in message
        )
        assert "Move them out of the directory" in message and "recomputed" in message
    for bad in (bad1, bad2):  # as the message says: moved aside, the other rows are read
        bad.rename(tmp_path / bad.name)
    assert store.done_keys() == {"a"}
