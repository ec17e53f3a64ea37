"""Several processes on one result store, and files that lie: issue 19's battery, with real processes.

- concurrent writers: processes appending and compacting the same store at
  once, and four `expreg run` drivers of different configurations on one
  --out, twice; every row is counted (none lost, none twice);
- checked reads: a flipped bit in a data page, a foreign or partial part
  file, a part with an Arrow extension type whose deserialisation would run
  a pickle (CVE-2023-47248): each refused with an error naming the file,
  never merged nor deleted;
- temporary files of killed writes removed by the next writer; a results
  directory with a non-UTF-8 name.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expreg import CheckpointError
from expreg.experiments import ResultStore, get_config, make_tasks

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__import__("expreg").__file__)))
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
WAIT_S = 280

#: One writer process: ``appends`` part files of ``rows`` rows each (keys ``TAG-i``), a compaction and a
#: ``done_keys`` after every append (the two operations that raced: a compaction deleting a part another
#: process was reading, two compactions overwriting each other's rows).
WRITER = """
import sys
from expreg.experiments.store import ResultStore
directory, tag, appends, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = ResultStore(directory)
for i in range(appends):
    store.append([{"key": f"{tag}-{i}-{j}", "experiment": "x-v1", "config_hash": tag, "seed": j,
                   "value": float(i * rows + j), "wall_seconds": 0.0} for j in range(rows)])
    store.compact()
    assert {f"{tag}-{i}-{j}" for j in range(rows)} <= store.done_keys()
"""


@contextlib.contextmanager
def processes(commands: list[list[str]]):
    """Start every command; at exit kill any still running (by its pid)."""
    procs = [subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def test_appends_racing_compactions_lose_no_row(tmp_path: Path) -> None:
    directory, writers, appends, rows = tmp_path / "lazy", 4, 30, 2  # 240 rows, 120 compactions
    cmds = [[sys.executable, "-c", WRITER, str(directory), f"w{w}", str(appends), str(rows)] for w in range(writers)]
    with processes(cmds) as procs:
        outcomes = [p.communicate(timeout=WAIT_S) for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, [err for _, err in outcomes]
    df = ResultStore(directory).read()
    expected = {f"w{w}-{i}-{j}" for w in range(writers) for i in range(appends) for j in range(rows)}
    assert set(df.key) == expected and len(df) == len(expected)  # every appended row, once
    ResultStore(directory).compact()
    assert pq.read_table(directory / "results.parquet").num_rows == len(expected)
    assert not list((directory / "parts").glob("*")), "parts or temporary files left behind"


#: lazy, tiny preset: each driver its own seeds (a different configuration, hence config hash and keys).
def _config(tmp_path: Path, seeds: list[int]) -> Path:
    path = tmp_path / f"seeds-{seeds[0]}.toml"
    path.write_text(f'experiment = "lazy"\npreset = "tiny"\nmax_steps = 60\nwidths = [16, 32]\nseeds = {seeds}\n')
    return path


@pytest.mark.timeout(900)  # eight driver processes on a loaded 2-core machine
def test_four_drivers_of_different_configurations_share_one_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    configs = [_config(tmp_path, [2 * k, 2 * k + 1]) for k in range(4)]
    expected = set()
    for cfg in configs:
        expected |= {t.key for t in make_tasks("lazy", get_config("lazy", config_file=cfg))}
    cli = "import sys; from expreg.cli import main; sys.exit(main(sys.argv[1:]))"
    for attempt in range(2):  # the second time every run is in the table: skipped, nothing duplicated
        cmds = [
            [sys.executable, "-c", cli, "run", "lazy", "--config", str(c), "--out", str(out), "--jobs", "1", "--quiet"]
            for c in configs
        ]
        with processes(cmds) as procs:
            outcomes = [p.communicate(timeout=WAIT_S) for p in procs]
        assert [p.returncode for p in procs] == [0] * len(cmds), [err for _, err in outcomes]
        if attempt == 1:
            assert all(" 0 runs done now" in o for o, _ in outcomes), outcomes
        df = ResultStore(out / "lazy").read()
        assert set(df.key) == expected and len(df) == len(expected)


# --- checked reads ----------------------------------------------------------------------------------


def _rows(keys):
    return [
        {
            "key": k,
            "experiment": "x-v1",
            "config_hash": "h",
            "seed": i,
            "lam": 1.0114562593575738 + i,
            "wall_seconds": 0.1,
        }
        for i, k in enumerate(keys)
    ]


def _flip_a_bit_in_the_data_of(path: Path, column: str) -> None:
    """Flip one low mantissa bit of the first value of ``column`` where its 8 bytes are stored, as a disk fault would."""
    import struct

    value = pq.read_table(path, columns=[column]).column(column)[0].as_py()
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<d", value))
    assert at >= 0, "the value is stored as its 8 bytes (plain encoding, incompressible)"
    data[at + 2] ^= 0x10
    path.write_bytes(bytes(data))
    changed = pq.read_table(path, columns=[column]).column(column)[0].as_py()  # unchecked, as the old store read
    assert changed != value


@pytest.mark.parametrize("where", ["results.parquet", "a part file"])
def test_a_flipped_bit_is_an_error_naming_the_file(tmp_path: Path, where: str) -> None:
    store = ResultStore(tmp_path / "lazy")
    store.append(_rows(["a", "b", "c"]))
    if where == "results.parquet":
        store.compact()
    path = store.table_path if where == "results.parquet" else next(store.parts_dir.glob("part-*.parquet"))
    _flip_a_bit_in_the_data_of(path, "lam")
    store.append(_rows(["d"]))  # a part to compact: a compaction reads every file
    for read in (store.read, store.done_keys, store.compact):
        with pytest.raises(CheckpointError, match="cannot be used") as info:
            read()
        assert str(path) in str(info.value) and "checksum" in str(info.value).lower()
    assert path.exists()  # never deleted


def test_a_flipped_bit_makes_expreg_report_fail_naming_the_file(tmp_path: Path) -> None:
    from expreg.cli import main

    out = tmp_path / "out"
    assert main(["run", "lazy", "--config", str(_config(tmp_path, [0])), "--out", str(out), "--quiet"]) == 0
    table = out / "lazy" / "results.parquet"
    _flip_a_bit_in_the_data_of(table, "wall_seconds")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from expreg.cli import main; sys.exit(main(sys.argv[1:]))",
            "report",
            str(out),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert str(table) in "".join(proc.stderr.splitlines()) and "checksum" in proc.stderr.lower()


def _write_foreign(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@pytest.mark.parametrize(
    "table",
    [
        pa.table({"a": [1, 2], "b": [3.0, 4.0]}),  # foreign: no key
        pa.table({"key": ["k1"], "experiment": ["lazy-v1"], "config_hash": ["h"], "seed": [0]}),  # key columns only
    ],
    ids=["foreign columns", "key columns only"],
)
def test_foreign_or_partial_part_files_are_refused_by_name_never_merged(tmp_path: Path, table: pa.Table) -> None:
    store = ResultStore(tmp_path / "lazy")
    store.append(_rows(["a"]))
    stranger = store.parts_dir / "part-foreign.parquet"
    _write_foreign(stranger, table)
    for op in (store.compact, store.done_keys, store.read):
        with pytest.raises(CheckpointError, match="not a result file") as info:
            op()
        assert str(stranger) in str(info.value)
    assert stranger.exists() and not store.table_path.exists()  # neither merged nor deleted


def test_an_extension_type_part_is_refused_without_running_its_pickle(tmp_path: Path) -> None:
    """CVE-2023-47248: pyarrow 14.0.0 unpickled 'arrow.py_extension_type' metadata on read; it must never run."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    field = pa.field(
        "key",
        pa.string(),
        metadata={
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": pickle.dumps(Payload()),
        },
    )
    table = pa.table(
        {"key": ["k"], "experiment": ["x"], "config_hash": ["h"], "seed": [0], "wall_seconds": [0.0], "v": [1.0]}
    )
    table = table.cast(pa.schema([field, *list(table.schema)[1:]]))
    store = ResultStore(tmp_path / "lazy")
    crafted = store.parts_dir / "part-crafted.parquet"
    _write_foreign(crafted, table)
    # refused by our schema check, or before it by pyarrow >= 14.0.1 itself ("pickle-based deserialization of
    # pyarrow.PyExtensionType subclasses is disabled"): either way the file is named and its pickle never runs
    with pytest.raises(CheckpointError, match=r"extension type|PyExtensionType") as info:
        store.done_keys()
    assert str(crafted) in str(info.value)
    assert not marker.exists()


def test_pyarrow_floor_excludes_the_vulnerable_release() -> None:
    """pyproject's pyarrow floor is above 14.0.0 (CVE-2023-47248) and at a release that writes page checksums."""
    import re

    text = (Path(SRC).parent / "pyproject.toml").read_text()
    floor = re.search(r'"pyarrow>=([0-9.]+)"', text)
    assert floor, "pyarrow is declared with a lower bound"
    assert tuple(int(x) for x in floor.group(1).split(".")) >= (15,)


def test_temporary_files_of_killed_writes_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "lazy")
    store.append(_rows(["a"]))
    left = [store.parts_dir / ".part-0123.parquet.abcd.tmp", store.directory / ".results.parquet.efgh.tmp"]
    for p in left:
        p.write_bytes(b"PAR1 half written")
    other = store.directory / ".summary.json.ijkl.tmp"  # not the store's: another writer may own it
    other.write_bytes(b"{")
    assert ResultStore(store.directory).done_keys() == {"a"}  # a reader removes nothing
    assert all(p.exists() for p in left)
    ResultStore(store.directory).compact()
    assert not any(p.exists() for p in left) and other.exists()


def test_a_results_directory_with_a_non_utf8_name(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9-results")  # Latin-1 bytes: not UTF-8
    try:
        (tmp_path / name).mkdir()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    store = ResultStore(tmp_path / name / "lazy")
    store.append(_rows(["a", "b"]))
    assert store.done_keys() == {"a", "b"}
    store.compact()
    assert sorted(store.read().key) == ["a", "b"]


def test_expreg_run_and_report_in_a_non_utf8_directory(tmp_path: Path) -> None:
    out = os.fsencode(tmp_path) + b"/caf\xe9-out"  # Latin-1 bytes: not UTF-8
    try:
        os.mkdir(out)
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    cli = "import sys; from expreg.cli import main; sys.exit(main(sys.argv[1:]))"
    config = str(_config(tmp_path, [0]))
    for _ in range(2):  # computed, then resumed: the part files written are read back
        proc = subprocess.run(
            [
                sys.executable.encode(),
                b"-c",
                cli.encode(),
                b"run",
                b"lazy",
                b"--config",
                config.encode(),
                b"--out",
                out,
                b"--quiet",
                b"--jobs",
                b"1",
            ],
            env=ENV,
            capture_output=True,
            timeout=WAIT_S,
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b" 0 runs done now, 4 already in the table" in proc.stdout
    assert os.path.exists(out + b"/report.html") and len(ResultStore(os.fsdecode(out) + "/lazy").read()) == 4


@pytest.mark.parametrize("where", ["results.parquet", "a part file"])
def test_a_flipped_bit_anywhere_in_a_file_is_an_error_naming_it(tmp_path: Path, where: str) -> None:
    """Page checksums leave the footer (schema, offsets, metadata, the leading magic) unchecked; the digest file
    covers every byte: each of 400 positions spread over the whole file, footer and magic included, is refused."""
    store = ResultStore(tmp_path / "lazy")
    store.append(_rows(["a", "b", "c"]))
    if where == "results.parquet":
        store.compact()
    path = store.table_path if where == "results.parquet" else next(store.parts_dir.glob("part-*.parquet"))
    clean = path.read_bytes()
    positions = sorted(
        {*range(8), *range(len(clean) - 8, len(clean)), *range(0, len(clean), max(1, len(clean) // 384))}
    )
    for at in positions:
        data = bytearray(clean)
        data[at] ^= 1 << (at % 8)
        path.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="cannot be used") as info:
            store.read()
        assert str(path) in str(info.value), at
    path.write_bytes(clean)
    assert sorted(store.read()["key"]) == ["a", "b", "c"]


def test_a_write_killed_between_digest_and_file_leaves_a_readable_store(tmp_path: Path, monkeypatch) -> None:
    """The digest file lists old and new digests before the file is replaced: a kill there loses nothing."""
    import expreg.experiments.store as store_module

    store = ResultStore(tmp_path / "lazy")
    store.append(_rows(["a", "b"]))
    store.compact()
    store.append(_rows(["c"]))
    real = store_module.atomic_open

    def killed_on_the_table(path, mode="wb"):  # the process dies while writing results.parquet itself
        if Path(path).name == "results.parquet":
            raise KeyboardInterrupt
        return real(path, mode)

    monkeypatch.setattr(store_module, "atomic_open", killed_on_the_table)
    with pytest.raises(KeyboardInterrupt):
        store.compact()
    monkeypatch.setattr(store_module, "atomic_open", real)
    assert len(store_module.digest_path(store.table_path).read_text().split()) == 2  # old and new accepted
    assert sorted(ResultStore(tmp_path / "lazy").read()["key"]) == ["a", "b", "c"]
    ResultStore(tmp_path / "lazy").compact()
    assert sorted(ResultStore(tmp_path / "lazy").read()["key"]) == ["a", "b", "c"]
    assert len(store_module.digest_path(store.table_path).read_text().split()) == 1


def test_a_marked_file_without_its_digest_file_is_refused(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "lazy")
    store.append(_rows(["a"]))
    part = next(store.parts_dir.glob("part-*.parquet"))
    (part.parent / (part.name + ".sha256")).unlink()
    with pytest.raises(CheckpointError, match="digest file") as info:
        store.read()
    assert str(part) in str(info.value)
