"""Training: the gradient-descent loop and its single-process driver.

``descent`` (the loop: step size, stopping rule, divergence), ``shard``
(the ``Shard`` it runs on: one rank's neurons and the collectives of a
step), ``history`` (what a run records and returns: ``History``,
``Run``, ``RunResult``), ``checkpoints`` (the checkpoint protocol, a run's
identity, the one-file format), ``options`` (``TrainOptions``), ``train``
(single-process training), ``communicator`` (the collectives a loop calls;
the single-process identity), ``scan`` (nested kernel scans over widths).
Imports only from ``expreg.core``.
"""
