"""Training: the gradient-descent loop and its single-process driver.

``descent`` (the loop, run on a ``Shard``: step size, stopping rule,
divergence), ``history`` (what a run records and returns: ``History``,
``Run``, ``RunResult``), ``checkpoints`` (the checkpoint protocol, a run's
identity, the one-file format), ``options`` (``TrainOptions``), ``train``
(single-process training), ``communicator`` (the collectives a loop calls;
the single-process identity), ``scan`` (nested kernel scans over widths).
Imports only from ``expreg.core``.
"""
