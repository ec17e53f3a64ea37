"""The GIL-free syrk of the Gram sums (core/blas.py) against the float64 product written out in NumPy."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from expreg.core import blas
from expreg.core.threads import blas_single_thread


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_syrk_adds_d_dt_to_the_lower_triangle_only(dtype: type) -> None:
    rng = np.random.default_rng(3)
    D1, D2 = rng.standard_normal((37, 11)), rng.standard_normal((37, 5))
    above = np.triu(np.full((37, 37), 7.0), 1)  # what is above the diagonal must stay
    S = np.asfortranarray(above.astype(dtype))
    blas.syrk_lower_(S, D1.astype(dtype))
    blas.syrk_lower_(S, D2.astype(dtype))
    truth = D1 @ D1.T + D2 @ D2.T  # float64
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(np.tril(S), np.tril(truth), rtol=0, atol=tol * np.abs(truth).max())
    np.testing.assert_array_equal(np.triu(S, 1), above)


def test_syrk_of_an_empty_block_changes_nothing() -> None:
    S = np.asfortranarray(np.eye(4))
    blas.syrk_lower_(S, np.empty((4, 0)))
    np.testing.assert_array_equal(S, np.eye(4))


@pytest.mark.parametrize(
    ("S", "D", "match"),
    [
        (np.zeros((4, 4), order="F"), np.zeros((4, 2), dtype=np.float32), "one dtype"),
        (np.zeros((4, 4), order="F"), np.zeros((5, 2)), r"S \(4, 4\)"),
        (np.zeros((4, 4), dtype=np.int64, order="F"), np.zeros((4, 2), dtype=np.int64), "float32 or float64"),
        (np.zeros((4, 4), order="C"), np.zeros((4, 2)), "Fortran-ordered"),
        (np.zeros((4, 4), order="F"), np.zeros((2, 4)).T, "C-contiguous"),
    ],
)
def test_syrk_refuses_what_blas_would_misread(S: np.ndarray, D: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        blas.syrk_lower_(S, D)


def test_syrk_in_threads_gives_each_accumulator_its_own_sum() -> None:
    """Worker threads update their own sums at once (the GIL is released): each equals its serial result."""
    rng = np.random.default_rng(4)
    Ds = [rng.standard_normal((64, 96)) for _ in range(4)]
    serial = [np.zeros((64, 64), order="F") for _ in Ds]
    for S, D in zip(serial, Ds, strict=True):
        for _ in range(20):
            blas.syrk_lower_(S, D)
    threaded = [np.zeros((64, 64), order="F") for _ in Ds]

    def work(i: int) -> None:
        for _ in range(20):
            blas.syrk_lower_(threaded[i], Ds[i])

    with blas_single_thread():
        workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    for a, b in zip(threaded, serial, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_workers_limit_keeps_every_loaded_blas_to_one_thread() -> None:
    """SciPy ships its own BLAS library beside NumPy's (the syrk above runs on it): the limit inside the workers
    must reach every BLAS library the process has mapped (/proc/self/maps), not only NumPy's."""
    import threadpoolctl

    mapped = {
        line.split()[-1]
        for line in Path("/proc/self/maps").read_text().splitlines()
        if line.rsplit("/", 1)[-1].startswith("lib") and "blas" in line.rsplit("/", 1)[-1].lower()
    }  # shared libraries such as libscipy_openblas*.so (not SciPy's extension modules that call them)
    assert mapped, "no BLAS library mapped: the test cannot see what it checks"
    limiter = blas_single_thread()
    assert limiter is not None
    with limiter:
        limited = {
            os.path.realpath(lib["filepath"]): lib["num_threads"]
            for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"
        }
    assert {os.path.realpath(p) for p in mapped} <= set(limited)
    assert set(limited.values()) == {1}
