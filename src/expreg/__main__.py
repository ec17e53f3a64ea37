"""``python -m expreg``: the ``expreg`` command (``expreg.cli.main``)."""

from expreg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
