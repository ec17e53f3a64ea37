"""Synthetic data (uniform points on the unit sphere, bounded labels) and loading user data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expreg import CheckpointError, load_dataset, make_dataset, sphere
from expreg.core.data import labels


def test_sphere_points_are_unit_vectors_drawn_uniformly() -> None:
    n, d = 20_000, 4
    X = sphere(n, d, seed=0)
    assert X.shape == (n, d) and X.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-14)
    # uniform on S^{d-1}: E x = 0 and E x x^T = I / d (each entry has variance <= 1/n)
    assert np.abs(X.mean(0)).max() < 5 / np.sqrt(n)
    assert np.abs(X.T @ X / n - np.eye(d) / d).max() < 5 / np.sqrt(n)


def test_sphere_is_deterministic_per_seed_and_distinct() -> None:
    assert np.array_equal(sphere(10, 3, seed=4), sphere(10, 3, seed=4))
    assert not np.array_equal(sphere(10, 3, seed=4), sphere(10, 3, seed=5))
    X = sphere(500, 3, seed=1)
    assert len(np.unique(X, axis=0)) == 500  # distinct, so lambda > 0
    X1 = sphere(7, 1, seed=0)
    assert set(np.unique(X1)) <= {-1.0, 1.0}  # S^0 = {-1, +1}


def test_labels() -> None:
    u = labels(20_000, "uniform", seed=0)
    assert u.min() >= -1 and u.max() <= 1
    assert abs(u.mean()) < 5 * np.sqrt(1 / 3 / u.size) and abs(u.var() - 1 / 3) < 0.01
    s = labels(1000, "sign", seed=0)
    assert set(np.unique(s)) == {-1.0, 1.0}
    with pytest.raises(ValueError, match=r"label_kind='gauss' is not known; choose one of 'uniform', 'sign'"):
        labels(3, "gauss")


def test_make_dataset_is_sphere_plus_labels() -> None:
    X, y = make_dataset(9, 3, seed=2, label_kind="sign")
    assert np.array_equal(X, sphere(9, 3, seed=2)) and np.array_equal(y, labels(9, "sign", seed=2))
    with pytest.raises(ValueError, match=r"n must be >= 1, got 0"):
        make_dataset(0, 3)
    with pytest.raises(ValueError, match=r"d must be >= 1, got 0"):
        make_dataset(3, 0)


def test_load_dataset_round_trip(tmp_path: Path) -> None:
    X, y = make_dataset(6, 2, seed=0)
    np.savez(tmp_path / "d.npz", X=X.astype(np.float32), y=y, extra=np.ones(2))
    X2, y2 = load_dataset(tmp_path / "d.npz")
    assert X2.dtype == np.float64 and np.array_equal(X2, X.astype(np.float32)) and np.array_equal(y2, y)


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no file at"):
        load_dataset(tmp_path / "missing.npz")
    np.savez(tmp_path / "noy.npz", X=np.eye(2))
    with pytest.raises(CheckpointError, match=r"has no array named 'y' \(found: \['X'\]\)"):
        load_dataset(tmp_path / "noy.npz")
    np.savez(tmp_path / "nox.npz", features=np.eye(2), y=np.ones(2))
    with pytest.raises(ValueError, match=r"no array named 'X'"):  # CheckpointError is a ValueError
        load_dataset(tmp_path / "nox.npz")
    (tmp_path / "bad.npz").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"not a readable \.npz"):
        load_dataset(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", X=np.array([[np.nan, 0.0]]), y=np.ones(1))
    with pytest.raises(ValueError, match="X contains NaN"):
        load_dataset(tmp_path / "nan.npz")
    np.savez(tmp_path / "shape.npz", X=np.eye(3), y=np.ones(2))
    with pytest.raises(ValueError, match="y has 2 entries but X has n = 3"):
        load_dataset(tmp_path / "shape.npz")
