"""benchmarks/run_all.py keeps one section of RESULTS.md per CPU (issue 25): a run on one CPU leaves the others."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import run_all  # noqa: E402


def test_a_second_cpu_gets_its_own_section_and_a_rerun_replaces_only_its_own(tmp_path: Path) -> None:
    amd = json.loads((BENCH / "results-amd-epyc.json").read_text())
    intel = json.loads(json.dumps(amd))
    intel["machine"].update(
        cpu="Intel(R) Xeon(R) Processor",
        isa=["avx512f", "avx2"],
        blas=[{"internal_api": "openblas", "version": "0.3.31", "architecture": "SkylakeX"}],
    )
    md = tmp_path / "RESULTS.md"
    md.write_text(report.HEADER + "\n## Scale-out\n\nkept\n")
    for results in (amd, intel, intel):
        run_all.write_cpu_markdown(str(md), run_all.cpu_slug(results["machine"]), report.render(results))
    text = md.read_text()
    assert run_all.cpu_slug(intel["machine"]) == "intel-xeon" and run_all.cpu_slug(amd["machine"]) == "amd-epyc"
    assert text.count("<!-- cpu-table: amd-epyc -->") == 1 and text.count("<!-- cpu-table: intel-xeon -->") == 1
    assert text.index("cpu-table: amd-epyc") < text.index("cpu-table: intel-xeon") < text.index("## Scale-out")
    assert text.endswith("kept\n")
    intel_part = text[text.index("cpu-table: intel-xeon") :]
    # every table of the Intel section names its CPU, ISA and BLAS kernels
    tables = intel_part[: intel_part.index("/cpu-table")].split("\n|---")
    assert len(tables) > 3
    for before in tables[:-1]:
        caption = [line for line in before.splitlines() if line.startswith("On ")][-1]
        assert "Intel(R) Xeon(R) Processor" in caption and "avx512f" in caption and "SkylakeX" in caption


def test_a_profile_section_goes_beside_its_own_cpus_tables(tmp_path: Path) -> None:
    """A CPU's first profile lands just before that CPU's step tables, not after another CPU's; a rerun replaces it
    in place."""
    md = tmp_path / "RESULTS.md"
    md.write_text(report.HEADER + "\n## Scale-out\n\nkept\n")
    run_all.write_cpu_markdown(str(md), "amd-epyc", "## Step benchmarks on AMD\n\nA")
    run_all.write_cpu_markdown(str(md), "intel-xeon", "## Step benchmarks on Intel\n\nI")
    for body in ("P1", "P2"):
        run_all.write_cpu_markdown(str(md), "amd-epyc", f"## Profile on AMD\n\n{body}", kind="profile")
    text = md.read_text()
    order = ["<!-- profile: amd-epyc -->", "<!-- /profile: amd-epyc -->", "<!-- cpu-table: amd-epyc -->"]
    order += ["<!-- cpu-table: intel-xeon -->", "## Scale-out"]
    assert [text.index(x) for x in order] == sorted(text.index(x) for x in order)
    assert "P2" in text and "P1" not in text and text.count("<!-- profile: amd-epyc -->") == 1
    # a CPU without step tables: before the foreign sections, as before
    run_all.write_cpu_markdown(str(md), "arm", "## Profile on ARM\n\nR", kind="profile")
    text = md.read_text()
    assert (
        text.index("<!-- cpu-table: intel-xeon -->") < text.index("<!-- profile: arm -->") < text.index("## Scale-out")
    )


def test_profile_step_records_its_cpu_section(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import profile_step

    monkeypatch.setenv("EXPREG_CALIBRATE", "0")
    md = tmp_path / "RESULTS.md"
    md.write_text(report.HEADER)
    out = profile_step.main(["--shapes", "64,4,512", "--reps", "1", "--md", str(md), "--tuning", "gemm=numpy"])
    (row,) = out["rows"]
    assert set(row["ms"]) == {"forward GEMM", "exp", "backward GEMM", "reductions", "step"}
    assert row["block"] <= 512 and row["activation_mib"] == 64 * 512 * 4 / 2**20
    slug = run_all.cpu_slug(out["machine"])
    text = md.read_text()
    assert f"<!-- profile: {slug} -->" in text and report.cpu_line(out["machine"]) in text
    assert "| kept |" in text and "| recomputed |" not in text
    # a tuning that recomputes (d = 4 <= recompute_d, more bytes than recompute_beyond): said so, no traffic figure
    forced = "gemm=numpy,recompute_d=4,recompute_beyond=0,block_bytes_recompute=65536"
    out = profile_step.main(["--shapes", "64,4,512", "--reps", "1", "--md", str(md), "--tuning", forced])
    assert out["rows"][0]["keep"] is False and out["rows"][0]["block"] == 65536 // (64 * 4)
    assert "| recomputed | - |" in md.read_text()


def test_kernel_scan_eigen_sections_are_per_cpu_and_name_it(tmp_path: Path) -> None:
    import bench_kernel

    md = tmp_path / "RESULTS.md"
    md.write_text(report.HEADER + "\n## Kernel\n\nfrom before, CPU not recorded\n")
    for rows in ("| 1 |", "| 2 |"):
        bench_kernel.write_section(md, f"## Kernel\n\nCommand: `x`.\n\n{rows}\n", bench_kernel.SECTION)
    text = md.read_text()
    cpu = report.this_cpu()
    assert text.count(f"## Kernel ({cpu['cpu']})") == 1 and "| 2 |" in text and "| 1 |" not in text
    assert f"On {report.cpu_line(cpu)}:" in text and "from before, CPU not recorded" in text


def test_bench_kernel_no_write_measures_without_touching_the_files(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """``--no-write``: an ad-hoc rerun of a few cells prints its table and leaves the JSON file and RESULTS.md alone
    (a two-cell run once replaced a full run's section); without it both are written."""
    import bench_kernel

    md, out = tmp_path / "RESULTS.md", tmp_path / "kernel.json"
    md.write_text("## Kernel\n\nthe full run\n")
    args = ["--ns", "16", "--m", "64", "--d", "3", "--dtypes", "float64", "--rounds", "1", "--settle", "0"]
    args += ["--impls", "expreg", "numpy-plain", "--md", str(md), "--out", str(out)]
    result = bench_kernel.main([*args, "--no-write"])
    assert result["rows"][0]["ratio_vs_numpy"] > 0 and result["rows"][0]["rel_err"]["expreg"] < 1e-12
    assert md.read_text() == "## Kernel\n\nthe full run\n" and not out.exists()
    assert "| 16 | float64 |" in capsys.readouterr().out
    bench_kernel.main(args)
    assert json.loads(out.read_text())["rows"][0]["n"] == 16 and "| 16 | float64 |" in md.read_text()


def test_the_paired_ratio_interval_covers_the_median_as_often_as_it_says() -> None:
    """benchmarks/paired_ratio.py's distribution-free interval of a median: at 10 pairs the 2nd and 9th order
    statistics (binomial coverage 1 - 2 * 11 / 1024 = 0.979; the 3rd and 8th cover only 0.891), and over
    draws from a skewed distribution of known median (exponential: ln 2) it covers that median at least 90 %
    of the time (Monte Carlo, 4000 samples of 10)."""
    import numpy as np
    import paired_ratio

    xs = [float(v) for v in range(10, 0, -1)]
    assert paired_ratio.median_interval(xs) == (2.0, 9.0)
    assert paired_ratio.median_interval([1.0, 2.0, 3.0]) == (1.0, 3.0)  # too few for 90 %: the extremes
    rng = np.random.default_rng(0)
    hits = [
        lo <= np.log(2) <= hi
        for lo, hi in (paired_ratio.median_interval(list(rng.exponential(size=10))) for _ in range(4000))
    ]
    assert 0.96 <= np.mean(hits) <= 0.995  # 0.979 expected; 4000 draws: +-0.007 (3 sigma)


def test_step_ab_parses_variants_and_runs_them_in_turn(capsys) -> None:  # type: ignore[no-untyped-def]
    """benchmarks/step_ab.py: 'label:field=value,...' -> Tuning overrides and the run-ahead switch; a tiny run
    trains each variant every round and leaves the tuning and ``RUN_AHEAD`` as they were."""
    import pytest
    import step_ab

    from expreg.core import calibrate
    from expreg.engine import descent

    assert step_ab.parse_variant("plain:ahead=0") == ("plain", {}, False)
    assert step_ab.parse_variant("r:recompute_d=16,recompute_beyond=None,exp_float32=torch") == (
        "r",
        {"recompute_d": 16, "recompute_beyond": None, "exp_float32": "torch"},
        True,
    )
    with pytest.raises(SystemExit, match="neither"):
        step_ab.parse_variant("x:blocks=3")
    before = calibrate.current()
    ms = step_ab.main(["16,3,256", "--rounds", "2", "a", "b:ahead=0,block_bytes=4096"])
    assert {k: len(v) for k, v in ms.items()} == {"a": 2, "b": 2} and all(x > 0 for v in ms.values() for x in v)
    assert calibrate.current() == before and descent.RUN_AHEAD
    assert "this / a: median" in capsys.readouterr().out
