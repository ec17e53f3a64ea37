"""
A custom experiment from a TOML file
====================================

Every experiment is a versioned configuration: a preset's fields, overridden
by a TOML file of your own. Here we write one for the ``convergence``
experiment, run its sweep, read the result table and build the report: the
same as ::

    expreg run convergence --config my.toml --out OUT
    expreg report OUT
"""

# %%
# The configuration file
# ----------------------
# Fields not given come from the named preset. Unknown fields are refused,
# and the configuration's hash keys its rows in the result table.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from expreg.experiments import ResultStore, build_report, get_config, run_experiment

out = Path(tempfile.mkdtemp(prefix="expreg-gallery-"))
toml = out / "my.toml"
toml.write_text("""\
experiment = "convergence"
preset = "tiny"
n = 8
widths = [32, 512, 4096]
seeds = [0, 1]
epsilon = 1e-2
max_steps = 600
""")
cfg = get_config("convergence", config_file=toml)
print(cfg.versioned_name, cfg.config_hash)
print(cfg.model_dump())

# %%
# Run the sweep
# -------------
# One task per (width, activation, seed). Rows are stored as each run
# finishes; running the same call again would skip them all. By default the
# tasks go to a pool of worker processes (``jobs=N``), which in a script of
# your own needs the usual ``if __name__ == "__main__":`` guard of
# ``multiprocessing``; this page runs them in one thread instead
# (``executor_factory`` takes any ``concurrent.futures.Executor``).
from concurrent.futures import ThreadPoolExecutor

sweep = run_experiment(
    "convergence", cfg, out, show_progress=False, executor_factory=lambda: ThreadPoolExecutor(max_workers=1)
)
print(f"{sweep.executed} runs executed, {sweep.skipped} already in the table")
table = ResultStore(out / "convergence").read().sort_values(["seed", "m"])
print(table[["m", "seed", "converged", "steps", "measured_rate", "predicted_rate"]].to_string(index=False))

# %%
# The report
# ----------
# ``build_report`` writes ``summary.json`` and the figures of each
# experiment, and ``report.html`` / ``report.md`` for the directory.
html, md, summaries = build_report(out)
for key, value in summaries[0]["headline"].items():
    print(f"{key} {value}")

figure = out / "convergence" / "figures" / f"{summaries[0]['figures'][0]}.png"
fig, ax = plt.subplots(figsize=(8, 5))
ax.imshow(plt.imread(figure))
ax.set_axis_off()
fig.tight_layout()

import shutil

shutil.rmtree(out)  # the example's scratch directory
