"""Random streams: every random object of expreg draws from its own domain.

A stream is ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(DOMAIN, *index)))``:
the user's seed is the entropy, and the spawn key names what is drawn. Two
different spawn keys give statistically independent streams for every seed
(NumPy's ``SeedSequence`` hashes entropy and spawn key together), so equal
seeds never correlate data with weights.

==================  ===========================  ================================
domain              spawn key                    drawn by
==================  ===========================  ================================
``DATA_POINTS``     ``(1,)``                     ``data.sphere`` (the inputs X)
``DATA_LABELS``     ``(2,)``                     ``data.labels`` (the targets y)
``NETWORK``         ``(3, k)``                   ``initialisation``: chunk k of neurons
``SPLIT``           ``(4,)``                     ``experiments.realdata``: train/test split
``TASK``            ``(5, *keys)``               ``derive``: a seed per experiment task
``FEATURES``        ``(6, variant, k)``          ``softmax_features``: chunk k of random
                                                 features, variant 0 i.i.d., 1 orthogonal
``TOKENS``          ``(7, role)``                ``experiments.attention``: queries (role 0),
                                                 keys (role 1)
==================  ===========================  ================================

``VERSION`` is stored in every checkpoint. Version 1 (expreg 0.1) drew data
from ``default_rng([seed, 1])`` / ``[seed, 2]`` and neuron chunk k from
``default_rng([seed, k])``: with equal seeds chunks 1 and 2 of the network
were the data's own streams. Checkpoints without the version are refused.
"""

from __future__ import annotations

import numpy as np

#: Stream scheme stored in checkpoints; 1 was expreg 0.1's shared-stream scheme.
VERSION = 2

DATA_POINTS = 1
DATA_LABELS = 2
NETWORK = 3
SPLIT = 4
TASK = 5
FEATURES = 6
TOKENS = 7

_DOMAINS = {
    DATA_POINTS: "data points",
    DATA_LABELS: "data labels",
    NETWORK: "network",
    SPLIT: "train/test split",
    TASK: "experiment task",
    FEATURES: "softmax random features",
    TOKENS: "attention queries and keys",
}


def generator(seed: int, domain: int, *index: int) -> np.random.Generator:
    """The generator of ``domain`` (one of this module's constants) for ``seed``, sub-stream ``index``.

    Parameters
    ----------
    seed : int
        Non-negative user seed.
    domain : int
        ``DATA_POINTS``, ``DATA_LABELS``, ``NETWORK``, ``SPLIT``, ``TASK``, ``FEATURES`` or ``TOKENS``.
    *index : int
        Further non-negative keys (the chunk number for ``NETWORK``).

    Examples
    --------
    >>> a = generator(0, DATA_POINTS).standard_normal(3)
    >>> b = generator(0, NETWORK, 0).standard_normal(3)
    >>> bool((a == b).any())
    False
    """
    if domain not in _DOMAINS:
        raise ValueError(f"random stream domain {domain!r} is not known; use one of {sorted(_DOMAINS)}")
    if int(seed) < 0 or any(int(i) < 0 for i in index):
        raise ValueError(f"seed and stream index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(domain), *(int(i) for i in index))))


def derive(seed: int, *keys: int) -> int:
    """A seed in [0, 2^63) for the task ``keys`` (e.g. (n, d)) of an experiment seed, from the ``TASK`` stream.

    Tasks with different keys get seeds drawn from independent streams, so
    their data and networks are independent even for the same experiment seed.

    >>> derive(0, 8, 16) != derive(0, 16, 16)
    True
    """
    return int(generator(seed, TASK, *keys).integers(0, 2**63, dtype=np.uint64))


def check_checkpoint(data: dict[str, np.ndarray], path: object) -> None:
    """Refuse a checkpoint (arrays ``data`` read from ``path``) written under another stream scheme.

    Raises
    ------
    CheckpointError
        ``data`` has no ``streams`` entry (written by expreg 0.1, whose
        networks shared random streams with the data) or another version.
    """
    from .errors import CheckpointError

    found = int(data["streams"]) if "streams" in data else 1
    if found != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written under random-stream scheme {found} (expreg 0.1: networks drew from the "
            f"data's streams); this version uses scheme {VERSION}, so its initial weights cannot be reproduced: "
            "delete the checkpoint and train again"
        )
