"""Initial weights of docs/theory.md section 1: w_r(0) ~ N(0, I_d), a_r uniform on {-1, +1}.

Neurons are drawn in fixed chunks of ``CHUNK`` neurons, chunk k from the
generator ``streams.generator(seed, streams.NETWORK, k)``, a stream of its
own (never one of the data's, whatever the seeds). Hence neuron r's weights
depend only on (seed, r, d, init): the first m' neurons of a width-m network
are the width-m' network, and any contiguous slice of neurons (a shard of a
width-sharded run) is drawn without drawing the rest. Weights are drawn in
float64 and rounded to the requested dtype, so float32 and float64 networks
of one seed agree to rounding.

- ``"gaussian"``: every (w_r, a_r) independent.
- ``"coupled"``: neurons 2p and 2p+1 share w and have opposite signs
  (Munteanu et al. 2022), so F(W(0), x) = 0 exactly; m must be even.
"""

from __future__ import annotations

import numpy as np

from . import streams
from .choices import Init

CHUNK = 4096  # neurons per generator; even, so coupled pairs never straddle chunks


def check_width(m: int, init: str, name: str = "m") -> int:
    """The width rule of the initialisations, declared once: ``init="coupled"`` pairs neurons, so m is even.

    ``name`` is the argument as its caller calls it ("m", "width", "widths").

    >>> check_width(8, "coupled"), check_width(7, "gaussian")
    (8, 7)
    >>> check_width(7, "coupled")
    Traceback (most recent call last):
    ...
    ValueError: init='coupled' pairs neurons, so m must be even; got m = 7. Use m = 8 or init='gaussian'
    """
    if init == Init.coupled and m % 2:
        raise ValueError(
            f"init='coupled' pairs neurons, so {name} must be even; got {name} = {m}. Use {name} = {m + 1} or init='gaussian'"
        )
    return m


INITS = Init.values()


def _chunk(seed: int, k: int, d: int, init: str) -> tuple[np.ndarray, np.ndarray]:
    rng = streams.generator(int(seed), streams.NETWORK, int(k))
    if init == "gaussian":
        w = rng.standard_normal((CHUNK, d))
        a = rng.integers(0, 2, size=CHUNK) * 2.0 - 1.0
    else:  # coupled: one draw per pair
        half = CHUNK // 2
        wp = rng.standard_normal((half, d))
        sp = rng.integers(0, 2, size=half) * 2.0 - 1.0
        w = np.repeat(wp, 2, axis=0)
        a = np.empty(CHUNK)
        a[0::2] = sp
        a[1::2] = -sp
    return w.T, a  # (d, CHUNK), (CHUNK,)


def init_weights(
    d: int,
    lo: int,
    hi: int,
    *,
    seed: int,
    init: str = "coupled",
    dtype: np.dtype = np.dtype(np.float64),
) -> tuple[np.ndarray, np.ndarray]:
    """Draw neurons ``lo`` to ``hi - 1`` of the network of this seed.

    Parameters
    ----------
    d : int
        Input dimension.
    lo, hi : int
        Half-open range of neuron indices, 0 <= lo <= hi.
    seed : int
        Non-negative seed.
    init : {"coupled", "gaussian"}
    dtype : numpy dtype
        float32 or float64.

    Returns
    -------
    W : ndarray (d, hi - lo), C-contiguous
    a : ndarray (hi - lo,), entries +-1
    """
    init = Init.check(init)
    W = np.empty((d, hi - lo), dtype=dtype)
    a = np.empty(hi - lo, dtype=dtype)
    for k in range(lo // CHUNK, (hi + CHUNK - 1) // CHUNK):
        c_lo, c_hi = k * CHUNK, (k + 1) * CHUNK
        s_lo, s_hi = max(lo, c_lo), min(hi, c_hi)
        if s_lo >= s_hi:
            continue
        w, s = _chunk(seed, k, d, init)
        W[:, s_lo - lo : s_hi - lo] = w[:, s_lo - c_lo : s_hi - c_lo]
        a[s_lo - lo : s_hi - lo] = s[s_lo - c_lo : s_hi - c_lo]
    return W, a
