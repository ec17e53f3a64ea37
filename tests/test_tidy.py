"""Tidy results (issue 21, item 4): History.to_pandas, load_results, one-line reprs and _repr_html_."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

import expreg
from expreg.experiments import ResultStore


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        if self.tags and self.tags[-1] == "td":
            self.cells.append(data)


def cells(html: str) -> list[str]:
    p = _Cells()
    p.feed(html)
    assert html.startswith("<table>") and html.endswith("</table>")
    return p.cells


@pytest.fixture(scope="module")
def run():
    X, y = expreg.make_dataset(6, 3, seed=0)
    return expreg.train(expreg.ExpNet.init(3, 256, seed=0), X, y, epsilon=1e-2, record_every=7)


def test_history_to_pandas_has_one_row_per_step_and_the_kernel_where_recorded(run) -> None:
    h = run.history
    df = h.to_pandas()
    assert df.index.name == "step" and list(df.index) == list(range(run.steps + 1))
    for col in ("loss", "residual", "max_movement", "frobenius_movement"):
        np.testing.assert_array_equal(df[col].to_numpy(), np.asarray(getattr(h, col)))
    recorded = df.kernel_deviation.notna()
    assert list(df.index[recorded]) == h.kernel_step and h.kernel_step[:2] == [0, 7]
    np.testing.assert_array_equal(df.kernel_lambda_min[recorded].to_numpy(), h.kernel_lambda_min)
    np.testing.assert_allclose(df.loss, 0.5 * df.residual**2, rtol=1e-12)  # L = 1/2 ||u - y||^2


def test_reprs_are_one_line_with_the_figures_that_matter(run) -> None:
    text = repr(run)
    assert "\n" not in text and len(text) < 250 and "history" not in text
    assert text.startswith("TrainResult(converged=True, steps=") and "m=256" in text
    assert f"{run.final_residual:.4g}" in text and f"{run.lr:.4g}" in text
    h = repr(run.history)
    assert "\n" not in h and f"steps={run.steps}" in h and f"kernel_records={len(run.history.kernel_step)}" in h
    assert repr(expreg.History()) == "History(steps=0)"
    q = expreg.theory.theorem_quantities(8, 0.5)
    assert "\n" not in repr(q) and f"width={q.width:.4g}" in repr(q)


def test_html_reprs_are_tables_of_the_same_figures(run) -> None:
    c = cells(run._repr_html_())
    assert c[c.index("steps") + 1] == str(run.steps) and "lr rule" in c
    c = cells(run.history._repr_html_())
    assert c[c.index("steps") + 1] == str(run.steps)
    q = expreg.theory.theorem_quantities(8, 0.5)
    c = cells(q._repr_html_())
    assert [c[i] for i in range(0, len(c), 4)] == [r[0] for r in q.rows()]
    assert "||u(0)-y|| &lt;= sqrt(n)" in q._repr_html_()  # the formulas' "<=" escaped, not read as markup


def test_load_results_stacks_experiments_and_filters_one(tmp_path) -> None:
    a = [{"key": f"a{i}", "experiment": "lazy-v1", "config_hash": "h", "seed": i, "m": 8 * (i + 1)} for i in range(3)]
    b = [{"key": "b0", "experiment": "regime-v1", "config_hash": "g", "seed": 0, "alpha": 0.5}]
    ResultStore(tmp_path / "lazy").append(a)
    ResultStore(tmp_path / "regime").append(b)
    (tmp_path / "not-a-store").mkdir()
    df = expreg.load_results(tmp_path)
    assert sorted(df.key) == ["a0", "a1", "a2", "b0"] and np.isnan(df.set_index("key").loc["b0", "m"])
    one = expreg.load_results(tmp_path, experiment="lazy")
    assert list(one.m) == [8, 16, 24] and set(one.experiment) == {"lazy-v1"}
    assert len(expreg.load_results(tmp_path / "regime")) == 1  # an experiment's own directory
    with pytest.raises(FileNotFoundError, match=r"no results of experiment 'width'.*found: lazy, regime"):
        expreg.load_results(tmp_path, "width")
    with pytest.raises(ValueError, match="not known"):
        expreg.load_results(tmp_path, "nonsense")
    with pytest.raises(FileNotFoundError, match="no results directory"):
        expreg.load_results(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no experiment results under"):
        expreg.load_results(tmp_path / "not-a-store")


def test_sharded_result_has_the_same_one_line_repr(run) -> None:
    from expreg.distributed.sharded import ShardedTrainResult
    from expreg.engine.history import Run

    rec = Run(
        W=np.zeros((3, 128)),
        converged=True,
        steps=run.steps,
        lr=run.lr,
        lr_rule="given",
        epsilon=1e-2,
        history=run.history,
        lambda_cts=run.lambda_cts,
        lambda_max_cts=run.lambda_max_cts,
    )
    res = ShardedTrainResult(run=rec, a=np.ones(128), lo=0, hi=128, m=256, rank=0, world_size=2, seconds=1.5)
    assert repr(res).startswith("ShardedTrainResult(converged=True, steps=") and "m=256" in repr(res)
    assert "\n" not in repr(res) and "W=" not in repr(res)
    assert cells(res._repr_html_())[1] == "True"


def test_width_answer_has_a_one_line_repr_and_an_html_table() -> None:
    from expreg.experiments.data_width import Cost, WidthAnswer

    cost = Cost(**{f.name: 1 for f in __import__("dataclasses").fields(Cost)})
    crit = {"median": 512.0, "q90": 1024.0}
    ans = WidthAnswer(
        n=8, d=3, lam=0.25, opnorm=9.0, variance=1.0, seeds=5, m_cap=4096, cost=cost, criteria={"op": crit}
    )
    assert repr(ans) == "WidthAnswer(n=8, d=3, lambda=0.25, seeds=5, m*[op] median=512, seconds=0)"
    c = cells(ans._repr_html_())
    assert c[c.index("m*[op] median") + 1] == "512"
