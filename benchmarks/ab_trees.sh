#!/bin/bash
# A/B of the GD step on the expreg.train path between two source trees, float32, three shapes, three rounds
# interleaved: OLD (a checkout of an earlier commit: git worktree add /tmp/old REV) against this tree with
# the calibration off (EXPREG_CALIBRATE=0: the defaults, the refactor alone) and on (what users get).
# Usage: bash benchmarks/ab_trees.sh /tmp/old/src     (prints ms per step, medians are read by hand)
set -euo pipefail
OLD_SRC=$1
NEW_SRC="$(cd "$(dirname "$0")/.." && pwd)/src"
PY=${PY:-python}
HERE="$(dirname "$0")"
for shape in "1024 32 65536" "2048 16 131072" "512 128 32768"; do
  for rep in 1 2 3; do
    o=$(PYTHONPATH=$OLD_SRC $PY "$HERE/train_step_time.py" $shape float32 8)
    n0=$(PYTHONPATH=$NEW_SRC EXPREG_CALIBRATE=0 $PY "$HERE/train_step_time.py" $shape float32 8)
    n1=$(PYTHONPATH=$NEW_SRC $PY "$HERE/train_step_time.py" $shape float32 8)
    echo "$shape rep$rep old=$o new_calibration_off=$n0 new_calibrated=$n1"
  done
done
