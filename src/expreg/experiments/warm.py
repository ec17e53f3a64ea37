"""Importing this module warms the process up for sweep tasks (``worker.preload``).

The preload of the sweep's forkserver (``runner.make_executor``) and of Dask
workers (``dask worker tcp://HOST:PORT --preload expreg.experiments.warm``).
"""

from .worker import preload

preload()
