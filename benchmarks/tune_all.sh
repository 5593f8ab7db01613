#!/usr/bin/env bash
# Every validation search behind the bundled prior's presets (diffprior/solvers/tuned.py), in
# order: a later search runs with the values chosen by the earlier ones for the same solver
# and task. Results accumulate in benchmarks/results/tuning.{json,md}; an interrupted run
# resumes (entries already there are skipped; add --redo to a line to recompute it).
# About 2.4 hours of one CPU core in all (measured: the sum of the `seconds` of every entry; P2L
# costs about six LDPS runs, so its searches use 10 images and only the tasks listed); e.g. `taskset -c 0 bash benchmarks/tune_all.sh`.
set -euo pipefail
cd "$(dirname "$0")"
T="python tune.py ${TUNE_ARGS:-}"
ALL="sr4-avg gauss-deblur motion-deblur inpaint-freeform inpaint-random"
$T --solvers tvadmm --params lmbda --tasks $ALL
$T --solvers pnpadmm --params rho --tasks $ALL --n 10
$T --solvers ldps --params step_size eta --tasks $ALL
$T --solvers gmldps --params fixed_point_weight --tasks sr4-avg inpaint-freeform
$T --solvers psld --params gluing_weight --tasks sr4-avg inpaint-freeform
$T --solvers p2l --params step_size prompt_lr --tasks sr4-avg --n 10
$T --solvers p2l --params step_size --tasks gauss-deblur inpaint-freeform --n 10
# motion deblurring's preset uses the Adam-like update (Table 6), whose steps are an order smaller
$T --solvers p2l --params step_size --tasks motion-deblur --n 10 --grid 0.01 0.03 0.1 0.3 1.0
$T --solvers p2l --params projection_weight --tasks sr4-avg gauss-deblur motion-deblur --n 10
$T --solvers p2l --params prompt_shift_step projection_cg_iters eta --tasks sr4-avg --n 10
