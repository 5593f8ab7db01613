#!/usr/bin/env bash
# Every validation search behind the bundled prior's presets (diffprior/solvers/tuned.py), in
# order: a later search runs with the values chosen by the earlier ones for the same solver
# and task. Results accumulate in benchmarks/results/tuning.{json,md}; an interrupted run
# resumes (entries already there are skipped; TUNE_ARGS=--redo recomputes them).
#
#   bash benchmarks/tune_all.sh [all|classic|latent|latent-a|latent-b|pixel|box]
#
# classic: the ADMM baselines (they do not use the diffusion prior: no need to redo them when
# the prior changes). latent: every search on the diffusion prior; latent-a and latent-b split
# it into two chains that may run at once, one per core (each chain keeps its own order; the
# results file is locked), e.g. `taskset -c 0 bash benchmarks/tune_all.sh latent-a &
# taskset -c 1 bash benchmarks/tune_all.sh latent-b`.
# pixel: DPS, DDS and DiffPIR on the bundled pixel prior, at the 100 steps of their benchmark
# rows (about 0.8 h of one core; in `all`).
# box: LDPS against TV-ADMM on the inpaint-box task at the paper's 1000 DDIM steps (a diagnostic
# of the prior's box-inpainting bar, behind no preset; about 35 min of one core; not in `all`).
# Cost (the sum of the `seconds` of the entries): classic about 0.4 h, latent about 2 h of one
# CPU core (P2L costs about six LDPS runs, so its searches use 10 images and only the tasks listed).
set -euo pipefail
cd "$(dirname "$0")"
PART="${1:-all}"
T="python tune.py ${TUNE_ARGS:-}"
ALL="sr4-avg gauss-deblur motion-deblur inpaint-freeform inpaint-random"

classic() {
  $T --solvers tvadmm --params lmbda --tasks $ALL
  $T --solvers pnpadmm --params rho --tasks $ALL --n 10
}
# P2L: step sizes first, then lambda, then the values searched on SR only
latent_a() {
  $T --solvers p2l --params step_size prompt_lr --tasks sr4-avg --n 10
  $T --solvers p2l --params step_size --tasks gauss-deblur --n 10
  # motion deblurring's preset uses the Adam-like update (Table 6), whose steps are an order smaller
  $T --solvers p2l --params step_size --tasks motion-deblur --n 10 --grid 0.003 0.01 0.03 0.1 0.3 1.0
  $T --solvers p2l --params projection_weight --tasks sr4-avg gauss-deblur motion-deblur --n 10
  $T --solvers p2l --params prompt_shift_step projection_cg_iters --tasks sr4-avg --n 10
  # LDPS plus prompt tuning (the prompt-only rows): its own K and learning rate, on Table 1's tasks
  $T --solvers ldps-pt --params prompt_lr prompt_iters --tasks sr4-avg inpaint-random --n 10
}
# the latent baselines, and P2L's inpainting step; eta is searched on LDPS only and given to
# every latent solver (diffprior/solvers/tuned.py), so the other searches run at LDPS's eta
latent_b() {
  $T --solvers ldps --params step_size eta --tasks $ALL
  $T --solvers ldir --params step_size --tasks $ALL
  $T --solvers gmldps --params fixed_point_weight --tasks sr4-avg gauss-deblur motion-deblur inpaint-freeform
  $T --solvers psld --params gluing_weight --tasks sr4-avg gauss-deblur motion-deblur inpaint-freeform
  $T --solvers p2l --params step_size --tasks inpaint-freeform --n 10
}

# the pixel-space solvers at their rows' 100 steps; DiffPIR's lambda before its zeta. DPS's step
# on SR first over the whole grid; the other tasks from 0.3 up (smaller steps lost on SR)
pixel() {
  local P="$T --steps 100 --n 10 --tasks sr4-avg gauss-deblur motion-deblur inpaint-freeform"
  $T --solvers dps --params step_size --tasks sr4-avg --steps 100 --n 10
  $T --solvers dps --params step_size --tasks gauss-deblur motion-deblur inpaint-freeform --steps 100 --n 10 \
     --grid 0.3 1 3 10 30
  $P --solvers dds --params gamma
  $P --solvers diffpir --params lmbda
  $P --solvers diffpir --params zeta
}

# the box-inpainting bar at the paper's number of steps (see docs/benchmarks.rst)
box() {
  $T --solvers ldps --params step_size --tasks inpaint-box --steps 1000 --n 10 --grid 0.05 0.1 0.2
  $T --solvers tvadmm --params lmbda --tasks inpaint-box --n 10
}

case "$PART" in
  all) classic; latent_b; latent_a; pixel ;;
  classic) classic ;;
  latent) latent_b; latent_a ;;
  latent-a) latent_a ;;
  latent-b) latent_b ;;
  pixel) pixel ;;
  box) box ;;
  *) echo "usage: tune_all.sh [all|classic|latent|latent-a|latent-b|pixel|box]" >&2; exit 2 ;;
esac
