"""Every bad input of issue 2 gets a clear error naming the argument, what was found and what to do.

Checked at the validation layer and through the public entry points that use
it (ExpNet.predict/gradient/loss, train, kernels).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from expreg import ExpNet, InputOutsideUnitBallWarning, kernels, train
from expreg.core.data import sphere
from expreg.core.validation import (
    check_nonnegative,
    check_points_distinct,
    check_positive,
    check_positive_int,
    check_probability,
    check_X,
    check_X_y,
    check_y,
)

GOOD_X = sphere(5, 3, seed=0)
GOOD_Y = np.linspace(-1, 1, 5)


def entry_points():
    """(name, callable(X, y)) for every public function that takes training data."""
    net = ExpNet.init(3, 8, seed=0)
    return [
        ("predict", lambda X, y: net.predict(X)),
        ("gradient", lambda X, y: net.gradient(X, y)),
        ("loss", lambda X, y: net.loss(X, y)),
        ("train", lambda X, y: train(net, X, y, max_steps=1)),
        ("ntk", lambda X, y: kernels.ntk(X)),
        ("empirical_ntk", lambda X, y: kernels.empirical_ntk(net, X)),
    ]


def with_nan(X):
    X = X.copy()
    X[2, 1] = np.nan
    return X


def with_inf(X):
    X = X.copy()
    X[0, 0] = -np.inf
    return X


BAD_X = [
    ("nan", with_nan(GOOD_X), ValueError, r"X contains NaN or inf \(1 entries\)"),
    ("inf", with_inf(GOOD_X), ValueError, r"X contains NaN or inf \(1 entries\)"),
    ("1-D", GOOD_X[:, 0], ValueError, r"X must be 2-D with shape \(n, d\), got 1-D shape \(5,\)"),
    ("3-D", GOOD_X[None], ValueError, r"X must be 2-D .* got 3-D"),
    ("no rows", np.zeros((0, 3)), ValueError, r"X is empty \(shape \(0, 3\)\)"),
    ("strings", np.array([["a", "b", "c"]] * 5), TypeError, r"X must hold numbers, got dtype <U1"),
    ("objects", np.array([[object()] * 3] * 5), TypeError, r"X must hold numbers, got dtype object"),
    ("complex", GOOD_X + 0j, TypeError, r"X is complex"),
    ("ragged", [[0.1, 0.2, 0.3], [0.1]], ValueError, r"X could not be read as a rectangular numeric array"),
]


@pytest.mark.parametrize("label, X, exc, pattern", BAD_X, ids=[b[0] for b in BAD_X])
def test_bad_inputs_are_refused_everywhere(label, X, exc, pattern) -> None:
    for _name, fn in entry_points():
        y = GOOD_Y if label not in ("no rows",) else np.zeros(0)
        with pytest.raises(exc, match=pattern):
            fn(X, y)


BAD_Y = [
    ("nan", np.array([0.1, np.nan, 0.2, 0.3, 0.4]), ValueError, r"y contains NaN or inf \(1 entries\)"),
    ("inf", np.array([0.1, np.inf, 0.2, 0.3, 0.4]), ValueError, r"y contains NaN or inf"),
    ("short", np.zeros(4), ValueError, r"y has 4 entries but X has n = 5 rows"),
    ("2-D", np.zeros((5, 2)), ValueError, r"y must be 1-D with n = 5 entries, got shape \(5, 2\)"),
    ("empty", np.zeros(0), ValueError, r"y has 0 entries but X has n = 5"),
    ("strings", np.array(list("abcde")), TypeError, r"y must hold numbers"),
]


@pytest.mark.parametrize("label, y, exc, pattern", BAD_Y, ids=[b[0] for b in BAD_Y])
def test_bad_targets_are_refused(label, y, exc, pattern) -> None:
    for name, fn in entry_points():
        if name in ("predict", "ntk", "empirical_ntk"):
            continue
        with pytest.raises(exc, match=pattern):
            fn(GOOD_X, y)


def test_column_vector_targets_and_integer_inputs_are_accepted() -> None:
    X, y = check_X_y(np.eye(3, dtype=int), np.arange(3)[:, None])
    assert X.dtype == np.float64 and y.shape == (3,)


def test_dimension_mismatch_names_both_dimensions() -> None:
    net = ExpNet.init(4, 8, seed=0)
    for fn in (net.predict, lambda X: train(net, X, GOOD_Y), lambda X: kernels.empirical_ntk(net, X)):
        with pytest.raises(ValueError, match=r"X has 3 features but the network expects d = 4"):
            fn(GOOD_X)
    with pytest.raises(ValueError, match=r"X2 has 2 features but the network expects d = 3"):
        kernels.ntk(GOOD_X, GOOD_X[:, :2])


def test_inputs_outside_the_unit_ball_warn_but_work() -> None:
    net = ExpNet.init(3, 8, seed=0)
    X = GOOD_X.copy()
    X[1] *= 1.5
    with pytest.warns(InputOutsideUnitBallWarning, match=r"1 rows with \|\|x\|\| > 1 \(max 1.5\)"):
        net.predict(X)
    with pytest.warns(InputOutsideUnitBallWarning):
        train(net, X, GOOD_Y, max_steps=1)


def test_huge_inputs_get_their_true_norm_in_the_warning_without_an_overflow() -> None:
    """Row norms are computed scaled: ||(3e200, 4e200)|| = 5e200 and ||(1e308, 1e308)|| = 1.41e308, where the squares overflow."""
    X = np.array([[0.6, 0.8], [3e200, 4e200], [1e308, 1e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow warning from the norm itself
        with pytest.warns(InputOutsideUnitBallWarning, match=r"2 rows with \|\|x\|\| > 1 \(max 1.41e\+308\)"):
            check_X(X)
        with pytest.warns(InputOutsideUnitBallWarning, match=r"1 rows with \|\|x\|\| > 1 \(max 5e\+200\)"):
            check_X(X[:2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_vectors_do_not_warn_in_either_precision(dtype) -> None:
    # rounding to float32 may put ||x|| at 1 + 6e-8: that is not "outside the unit ball"
    X = sphere(200, 7, seed=1)
    net = ExpNet.init(7, 8, seed=0, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputOutsideUnitBallWarning)
        net.predict(X)
        net.predict(X.astype(np.float32))
        check_X(X.astype(np.float32))


def test_values_too_large_for_float32_are_named_as_such() -> None:
    net = ExpNet.init(2, 4, seed=0, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"X has entries too large for float32 \(largest \|value\| 1e\+39\)"):
            net.predict(np.array([[1e39, 0.0]]))


def test_duplicate_or_zero_inputs_are_refused_when_lambda_is_asked_for() -> None:
    X = np.vstack([GOOD_X, GOOD_X[1]])
    n = len(GOOD_X)
    with pytest.raises(ValueError, match=rf"rows 1, {n} of X coincide"):
        check_points_distinct(X)
    with pytest.raises(ValueError, match="coincide"):
        kernels.ntk_lambda(X)
    with pytest.raises(ValueError, match=rf"row {n} of X is zero"):
        check_points_distinct(np.vstack([GOOD_X, np.zeros(3)]))
    check_points_distinct(GOOD_X)  # distinct: no error


@pytest.mark.parametrize(
    "value, exc, pattern",
    [
        (0, ValueError, r"m must be >= 1, got 0"),
        (2.5, TypeError, r"m must be an integer, got float 2.5"),
        (True, TypeError, r"got bool"),
        ("3", TypeError, r"got str"),
    ],
)
def test_check_positive_int(value, exc, pattern) -> None:
    with pytest.raises(exc, match=pattern):
        check_positive_int(value, "m")
    assert check_positive_int(np.int64(3), "m") == 3


@pytest.mark.parametrize(
    "check, accepted, refused, message",
    [
        (
            check_positive,
            [1, 2.5, np.float32(0.5), np.int64(3), 1e300],
            [0, -1.0, float("nan"), float("inf"), True, "1", None, np.array([1.0])],
            "x must be a positive finite number, got ",
        ),
        (
            check_nonnegative,
            [0, 0.0, 2.5, np.float64(1e-9)],
            [-1e-12, float("nan"), float("inf"), False, "0"],
            "x must be a finite number >= 0, got ",
        ),
        (check_probability, [1e-9, 0.5, np.float32(0.99)], [0.0, 1.0, 1.5, -0.5, float("nan"), True], "x must "),
    ],
)
def test_number_checks_accept_real_numbers_in_range_and_name_the_rest(check, accepted, refused, message) -> None:
    for value in accepted:
        out = check(value, "x")
        assert type(out) is float and out == float(value)
    for value in refused:
        with pytest.raises(ValueError, match=re.escape(message)):
            check(value, "x")


def test_number_check_messages_show_numpy_scalars_as_numbers() -> None:
    with pytest.raises(ValueError, match=re.escape("lr must be a positive finite number, got -1.0; say more")):
        check_positive(np.float64(-1.0), "lr", hint="; say more")
    with pytest.raises(ValueError, match=re.escape("n must be a positive finite number, got 0")):
        check_positive(np.int64(0), "n")
    with pytest.raises(ValueError, match=re.escape("delta must lie in (0, 1), got 2.0")):
        check_probability(2, "delta")


def test_check_y_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"targets has 2 entries but X has n = 3"):
        check_y(np.zeros(2), 3, name="targets")


# --- issue 19: sparse inputs and hand-made weights -------------------------------------------------


def test_a_sparse_matrix_is_named_and_told_to_densify() -> None:
    import scipy.sparse

    X = scipy.sparse.csr_matrix(GOOD_X)
    with pytest.raises(TypeError, match=r"X is a scipy.sparse matrix \(csr_matrix, shape \(\d+, 3\)\).*X.toarray\(\)"):
        ExpNet.init(3, 4, seed=0).predict(X)
    np.testing.assert_array_equal(
        ExpNet.init(3, 4, seed=0).predict(X.toarray()), ExpNet.init(3, 4, seed=0).predict(GOOD_X)
    )


@pytest.mark.parametrize(
    "W, a, message",
    [
        (np.array([[np.nan, 0.0], [0.0, 0.0]]), np.ones(2), "W contains NaN or inf"),
        (np.zeros((2, 2)), np.array([1.0, np.inf]), "a contains NaN or inf"),
        (np.zeros(3), np.ones(3), r"W must be a 2-D array \(d, m\) with d, m >= 1, got shape \(3,\)"),
        (np.zeros((2, 2)), np.ones(3), r"a must be 1-D with m = 2 entries"),
    ],
)
def test_from_weights_refuses_bad_weights(W, a, message) -> None:
    with pytest.raises(ValueError, match=message):
        ExpNet.from_weights(W, a)


def test_from_weights_takes_lists_as_arrays() -> None:
    W, a = [[0.1, -0.2], [0.3, 0.4]], [1.0, -1.0]
    net = ExpNet.from_weights(W, a)
    x = np.array([[0.5, 0.5]])
    # F(W, x) = sum_r a_r exp(<w_r, x>) with s = 1 (scaling "none"): the closed form
    expected = np.exp(0.5 * 0.1 + 0.5 * 0.3) - np.exp(0.5 * -0.2 + 0.5 * 0.4)
    assert net.predict(x)[0] == pytest.approx(expected, rel=1e-12)
