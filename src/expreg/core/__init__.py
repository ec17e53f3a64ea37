"""The lowest layer: the network, its maths and the array kernels.

Choices, errors, validation, storage and random streams; the activations and
their closed forms, initialisation, ``ExpNet``, the kernels, their
eigenvalues, the theorem's quantities and the data sets; the array backends
(``backends``: NumPy / torch) and the blocked arithmetic on them (``ops``
and ``fastpath`` for a step, ``gram`` for the empirical kernel), which the
model and the kernels compute through; ``reuse.KEPT``, the one place that
keeps buffers and made objects between calls. Nothing here imports from
``expreg.engine`` or any layer above.
"""
