"""Random streams: data, labels and network weights are independent for equal seeds."""

from __future__ import annotations

import numpy as np
import pytest

import expreg
from expreg import streams
from expreg.core.errors import CheckpointError
from expreg.core.initialisation import init_weights


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_equal_seeds_give_weights_independent_of_the_data(seed: int) -> None:
    # expreg 0.1 drew neuron chunk k from default_rng([seed, k]): chunks 1 and 2 were the data's streams,
    # and neurons 4096 + 2i were exactly parallel to x_i (|cos| = 1). Independent streams: no neuron is.
    n, d, m = 64, 16, 3 * 4096
    X, _ = expreg.make_dataset(n, d, seed=seed)
    W, _ = init_weights(d, 0, m, seed=seed, init="coupled")
    cos = np.abs(X @ (W / np.linalg.norm(W, axis=0)))  # (n, m)
    # for independent directions in d = 16, |cos| > 0.95 has probability < 1e-15 per pair
    assert cos.max() < 0.95
    # <x_i, w_r> ~ N(0, 1) exactly when w_r ~ N(0, I) independent of the unit x_i
    z = (X @ W).ravel()
    assert abs(z.mean()) < 0.02  # standard error about 0.003 (m/2 independent w, n points)
    assert abs(z.var() - 1) < 0.05


def test_raw_streams_of_one_seed_are_uncorrelated() -> None:
    k = 200_000
    draws = {
        name: streams.generator(3, dom, *idx).standard_normal(k)
        for name, dom, idx in [
            ("points", streams.DATA_POINTS, ()),
            ("labels", streams.DATA_LABELS, ()),
            ("chunk0", streams.NETWORK, (0,)),
            ("chunk1", streams.NETWORK, (1,)),
            ("chunk2", streams.NETWORK, (2,)),
            ("split", streams.SPLIT, ()),
        ]
    }
    names = list(draws)
    corr = np.corrcoef(np.stack([draws[n] for n in names]))
    off = corr[~np.eye(len(names), dtype=bool)]
    assert np.abs(off).max() < 5 / np.sqrt(k)  # 5 standard errors of a null correlation


def test_stream_of_data_is_not_a_network_chunk_for_any_small_seed() -> None:
    for seed in range(20):
        x = streams.generator(seed, streams.DATA_POINTS).standard_normal(8)
        for other in range(20):
            for k in range(4):
                assert not np.array_equal(x, streams.generator(other, streams.NETWORK, k).standard_normal(8))


def test_unknown_domain_and_negative_seed_are_refused() -> None:
    with pytest.raises(ValueError, match="domain"):
        streams.generator(0, 99)
    with pytest.raises(ValueError, match="non-negative"):
        streams.generator(-1, streams.NETWORK, 0)


def test_checkpoint_of_the_old_scheme_is_refused(tmp_path) -> None:
    X, y = expreg.make_dataset(8, 3, seed=0)
    net = expreg.ExpNet.init(3, 64, seed=0)
    path = tmp_path / "ck.npz"
    expreg.train(net, X, y, max_steps=5, epsilon=1e-12, checkpoint=path, checkpoint_every=2)
    data = dict(np.load(path))
    assert int(data.pop("streams")) == streams.VERSION
    np.savez(path, **data)  # what expreg 0.1 wrote: no stream scheme
    with pytest.raises(CheckpointError, match="random-stream scheme 1"):
        expreg.train(net, X, y, max_steps=10, epsilon=1e-12, checkpoint=path, checkpoint_every=2)
