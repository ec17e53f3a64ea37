"""Training: the gradient-descent loop and its single-process driver.

``descent`` (the loop, its settings and stopping rule, run on a ``Shard``),
``train`` (single-process training, checkpoints), ``communicator`` (the
collectives a loop calls; the single-process identity), ``scan`` (nested
kernel scans over widths). Imports only from ``expreg.core``.
"""
