"""``python -m expreg.distributed ...`` (for torchrun): runs the ``expreg distributed`` command.

An entry point, so it may import the CLI (nothing else in ``expreg.distributed`` does).
"""

from ..cli.distributed_cmd import module_main

if __name__ == "__main__":
    raise SystemExit(module_main())
