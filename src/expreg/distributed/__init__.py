"""Width-sharded training on torch.distributed (docs/theory.md section 2).

- ``comm``: the torch collectives (``TorchCommunicator``, process-group start and stop);
- ``checkpoint``: per-rank checkpoints and ``load_checkpoint``;
- ``sharded``: ``train_sharded``, the descent loop of ``expreg.train`` on this rank's neurons.

``python -m expreg.distributed -- ...`` runs the ``expreg distributed`` command (torchrun).
torch is imported only when a process group is used.
"""
