"""``python -m expreg.cli ...``: the ``expreg`` command (also what ``python -m expreg.distributed`` runs)."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
