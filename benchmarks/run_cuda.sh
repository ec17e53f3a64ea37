#!/usr/bin/env bash
# Everything a lent GPU should run, in one go, sized to fit a 15-minute lease (about 8 minutes of commands).
#
#   bash benchmarks/run_cuda.sh [OUTDIR]
#
# Runs from the repository root with the machine's own python3 (a CUDA build of PyTorch; JAX with CUDA for
# the JAX column) and the package from src/ (no install). In order, each part under its own time limit:
#   1. the machine: GPU, driver, library versions;
#   2. the tests that pick CUDA when it is available (the torch backend, ops, the scan, descent, kernels);
#   3. the step table (expreg-torch against torch.compile, JAX jit and hand-written PyTorch, same GPU);
#   4. the kernel (ops.gram against the plain torch reference), n = 256, 1024, 4096, m = 65536;
#   5. the scan reach (the largest n a nested-width scan finishes in the budget), float32;
#   6. width-sharded training on one GPU (one process, and one NCCL rank), quick.
# Each benchmark rewrites its own section of benchmarks/RESULTS-cuda.md; the files and logs are copied
# to OUTDIR (default $OUT where set, else ./cuda-out).
set -u
OUTDIR=${1:-${OUT:-cuda-out}}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
started=$(date +%s)
part() { echo; echo "=== $1 ($(($(date +%s) - started)) s) ==="; }

part "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c "import sys, torch, numpy, scipy; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'scipy', scipy.__version__, 'gpu', torch.cuda.get_device_name(0))"
$PY -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tail -1

part "tests on CUDA"
timeout 75 $PY -m pytest -q -p no:cacheprovider -o addopts="-ra" tests/test_backends.py tests/test_cuda_setup.py \
  tests/test_ops.py tests/test_scan.py tests/test_descent.py tests/test_kernels.py tests/test_model.py \
  2>&1 | tee "$OUTDIR/tests.log" | tail -15

part "step"
timeout 170 $PY benchmarks/run_all.py --device cuda --section step --max-minutes 2.2 --budget-s 1 \
  --impls expreg-torch torch-compile jax-jit torch-manual 2>&1 | tee "$OUTDIR/step.log"

part "kernel"
timeout 80 $PY benchmarks/run_all.py --device cuda --section kernel --max-minutes 1 2>&1 | tee "$OUTDIR/kernel.log"

part "scan"
timeout 160 $PY benchmarks/run_all.py --device cuda --section scan --max-minutes 2.2 \
  --device-args "--budget-s 110" 2>&1 | tee "$OUTDIR/scan.log"

part "sharded training"
timeout 50 $PY benchmarks/bench_scaleout.py --device cuda --quick 2>&1 | tail -20 | tee "$OUTDIR/scaleout.log"

part "done"
cp benchmarks/RESULTS-cuda.md benchmarks/results-cuda.json "$OUTDIR"/ 2>/dev/null
cp benchmarks/scaleout-cuda.json "$OUTDIR"/ 2>/dev/null
ls -la "$OUTDIR"
