"""``python -m expreg.distributed ...`` (for torchrun): becomes ``python -m expreg.cli distributed ...``.

The distributed layer never imports the CLI (tests/test_layers.py): this
module hands its process over to the command instead, with ``os.execv``,
which keeps the process id and the environment (torchrun's RANK,
LOCAL_RANK, WORLD_SIZE...), so torchrun supervises the same process.
"""

from __future__ import annotations

import os
import sys


def command_line(argv: list[str]) -> list[str]:
    """The command line this module becomes: the ``expreg distributed`` command with ``argv``."""
    return [sys.executable, "-m", "expreg.cli", "distributed", *argv]


if __name__ == "__main__":
    sys.stdout.flush()
    line = command_line(sys.argv[1:])
    os.execv(line[0], line)
