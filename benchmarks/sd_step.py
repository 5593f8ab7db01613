"""Time one P2L-style step at Stable Diffusion v1.4 size: diffprior (JAX) against diffusers (PyTorch).

Three computations with random weights of the SD v1.4 architecture, on one machine, in one run:

(a) UNet forward :math:`\\epsilon_\\theta(z_t, t, c)`;
(b) :math:`\\nabla_c \\|A(D(\\hat z_0(z_t, t, c))) - y\\|^2` (P2L's prompt-tuning gradient);
(c) :math:`\\nabla_z` of the same loss (DPS/LDPS-style latent gradient);

with :math:`\\hat z_0` Tweedie's estimate, :math:`D` the VAE decoder and :math:`A` a 4x
average-pooling downsampler (written inline). (b) and (c) run with and without activation
checkpointing (``remat`` in diffprior, ``enable_gradient_checkpointing`` in diffusers).
JAX timings are after compilation (reported separately), median of ``--reps`` calls; PyTorch
timings are after one warm-up call. Peak memory: sampled resident set size on CPU;
``memory_stats()`` / ``max_memory_allocated`` on GPU, plus XLA's own buffer plan
(``memory_analysis``). The PyTorch half runs in a subprocess (``--torch-python``) because
the diffprior environment is torch-free.

Usage::

    python benchmarks/sd_step.py                          # 256 px on CPU, 256 + 512 on GPU
    python benchmarks/sd_step.py --sizes 512 --reps 5 --torch-python /path/to/torch/python

Writes ``benchmarks/results/sd_step.json`` and ``benchmarks/results/sd_step.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from diffprior.models.presets import SD_V1_TEXT, SD_V1_UNET, SD_V1_VAE, sd_v1_configs
from diffprior.models.unet import UNet2DConditionModel
from diffprior.models.vae import AutoencoderKL
from diffprior.prior import LatentDiffusionPrior, count_params
from diffprior.schedule import Schedule

HERE = Path(__file__).parent
QUIET_LOAD = 1.0  # 1-min load average allowed before the run (the run itself adds one per core)
OPS = ("forward", "grad_c", "grad_z", "grad_c_remat", "grad_z_remat")
LABELS = {
    "forward": "(a) UNet forward",
    "grad_c": "(b) grad wrt text embedding c",
    "grad_z": "(c) grad wrt latent z",
    "grad_c_remat": "(b) grad wrt c, remat",
    "grad_z_remat": "(c) grad wrt z, remat",
}


class PeakRSS:
    """Sample the resident set size in a background thread; ``peak`` in bytes."""

    def __init__(self, interval=0.002):
        import psutil

        self.proc, self.interval, self.peak, self._stop = psutil.Process(), interval, 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def avgpool4(x):
    """The forward operator A: 4x average pooling of ``(N, H, W, C)`` images."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))


def data_loss(prior, z, c, t, y):
    """:math:`\\|A(D(\\hat z_0(z, t, c))) - y\\|^2`."""
    return jnp.sum((avgpool4(prior.decode(prior.x0(z, t, c))) - y) ** 2)


def _memory_analysis(compiled) -> dict:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return {}
    if m is None:
        return {}
    return {"xla_temp_mb": m.temp_size_in_bytes / 2**20, "xla_argument_mb": m.argument_size_in_bytes / 2**20}


def random_params(module, seed: int, *example, dtype=jnp.float32) -> dict:
    """Random weights for a Flax ``module``, drawn leaf by leaf on the host.

    Kernels and embeddings :math:`\\mathcal N(0, 1/\\text{fan-in})`, normalisation scales 1,
    biases 0. Unlike ``module.init`` (an initialising forward pass, compiled, whose scratch
    stays in the process's heap), this allocates each
    weight once, as PyTorch's constructors do, so that the peak memory measured later is the
    computation's and not the initialisation's leftovers. Timings do not depend on the values.
    """
    import numpy as np

    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *example)["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        if name in ("kernel", "embedding"):
            fan_in = int(np.prod(leaf.shape[:-1])) if name == "kernel" else leaf.shape[-1]
            value = rng.standard_normal(leaf.shape, dtype=np.float32) * np.float32(fan_in ** -0.5)
        else:
            value = (np.ones if name == "scale" else np.zeros)(leaf.shape, np.float32)
        return jnp.asarray(value, dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def run_jax(size: int, batch: int, reps: int, timestep: int, dtype, remat_modes, ops=OPS) -> dict:
    """Time the three computations (those of ``ops``) with diffprior on the default JAX device."""
    unet_cfg, vae_cfg, text_cfg = sd_v1_configs()
    t0 = time.perf_counter()
    unet, vae = UNet2DConditionModel(unet_cfg), AutoencoderKL(vae_cfg)
    # No text encoder: unused here, and the PyTorch half builds none either.
    prior = LatentDiffusionPrior(
        random_params(unet, 0, jnp.zeros((1, 16, 16, unet_cfg.in_channels)), jnp.zeros((1,)),
                      jnp.zeros((1, text_cfg.max_position_embeddings, unet_cfg.cross_attention_dim)), dtype=dtype),
        random_params(vae, 1, jnp.zeros((1, 128, 128, vae_cfg.in_channels)), dtype=dtype), {},
        Schedule.create(), unet, vae, None, None, dtype)
    jax.block_until_ready(prior.unet_params)
    init_s = time.perf_counter() - t0
    remat_prior = prior.replace(unet=type(prior.unet)(unet_cfg, True), vae=type(prior.vae)(vae_cfg, True))
    h = size // prior.downsample_factor
    kz, kc = jax.random.split(jax.random.PRNGKey(1))
    z = jax.random.normal(kz, (batch, h, h, 4), jnp.float32)
    c = jax.random.normal(kc, (batch, text_cfg.max_position_embeddings, unet_cfg.cross_attention_dim), jnp.float32)
    y = jnp.full((batch, size // 4, size // 4, 3), 0.5, jnp.float32)
    t = jnp.int32(timestep)
    dev = jax.devices()[0]

    fns = {
        "forward": (prior, jax.jit(lambda p, z, c: p.model_output(z, t, c))),
        "grad_c": (prior, jax.jit(jax.grad(lambda p, z, c: data_loss(p, z, c, t, y), argnums=2))),
        "grad_z": (prior, jax.jit(jax.grad(lambda p, z, c: data_loss(p, z, c, t, y), argnums=1))),
    }
    if True in remat_modes:
        fns["grad_c_remat"] = (remat_prior, fns["grad_c"][1])
        fns["grad_z_remat"] = (remat_prior, fns["grad_z"][1])
    if False not in remat_modes:
        del fns["grad_c"], fns["grad_z"]
    fns = {name: f for name, f in fns.items() if name in ops}

    res = {}
    for name, (p, fn) in fns.items():
        t0 = time.perf_counter()
        with PeakRSS() as mem_compile:
            compiled = fn.lower(p, z, c).compile()
        compile_s = time.perf_counter() - t0
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(p, z, c))
            first = time.perf_counter() - t0
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(p, z, c))
                times.append(time.perf_counter() - t0)
        out = {"median_s": statistics.median(times), "min_s": min(times), "times_s": times, "first_call_s": first,
               "compile_s": compile_s, "peak_rss_mb": mem.peak / 2**20,
               "peak_rss_compile_mb": mem_compile.peak / 2**20, **_memory_analysis(compiled)}
        stats = dev.memory_stats() if dev.platform != "cpu" else None
        if stats:
            out["peak_device_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20  # cumulative
        res[name] = out
        print(f"  jax {name:14s} {out['median_s']:8.3f} s  (compile {compile_s:.1f} s, "
              f"peak RSS {out['peak_rss_mb']:.0f} MB)", flush=True)
        del compiled
    return {"results": res, "init_s": init_s, "device": dev.platform, "device_name": dev.device_kind,
            "jax": jax.__version__, "params": {"unet": count_params(prior.unet_params),
                                                "vae": count_params(prior.vae_params),
                                                "text_encoder": 0}}


def run_jax_isolated(size: int, batch: int, reps: int, timestep: int, dtype: str, remat_modes, ops) -> dict:
    """:func:`run_jax` for ``ops`` in a fresh interpreter, so that its peak memory is its own."""
    job = {"size": size, "batch": batch, "reps": reps, "timestep": timestep, "dtype": dtype,
           "remat": list(remat_modes), "ops": list(ops)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)], text=True,
                          stdout=subprocess.PIPE)  # its own progress line is repeated by the caller
    if proc.returncode != 0:
        raise RuntimeError(f"JAX child for {ops} failed (exit status {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(job: dict) -> int:
    """The JAX half of one isolated measurement: print its results as one JSON line."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[job["dtype"]]
    out = run_jax(job["size"], job["batch"], job["reps"], job["timestep"], dtype, tuple(job["remat"]),
                  tuple(job["ops"]))
    print(json.dumps(out), flush=True)
    return 0


def run_torch(python: str, size: int, batch: int, reps: int, timestep: int, dtype: str, remat_modes,
              cpu: bool, ops=None) -> dict:
    """Run ``sd_step_torch.py`` with a torch interpreter on the same job; return its results."""
    job = {"unet_config": SD_V1_UNET, "vae_config": SD_V1_VAE, "size": size, "batch": batch, "reps": reps,
           "timestep": timestep, "alpha_bar": float(Schedule.create().alphas_cumprod[timestep]),
           "text_len": SD_V1_TEXT["max_position_embeddings"], "dtype": dtype, "remat": list(remat_modes),
           "cpu": cpu, "ops": list(ops) if ops else None}
    proc = subprocess.run([python, str(HERE / "sd_step_torch.py")], input=json.dumps(job), text=True,
                          capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"torch benchmark failed ({python}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, r in out["results"].items():
        print(f"  torch {name:12s} {r['median_s']:8.3f} s  (peak RSS {r['peak_rss_mb']:.0f} MB)", flush=True)
    return out


def write_markdown(report: dict, path: Path):
    lines = [
        "# One P2L-style step at SD v1.4 size: diffprior (JAX) vs diffusers (PyTorch)",
        "",
        f"Machine: {report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"JAX device `{report['machine']['jax_device']}`, torch device `{report['machine'].get('torch_device')}`; "
        f"jax {report['machine']['jax']}, torch {report['machine'].get('torch')}, "
        f"diffusers {report['machine'].get('diffusers')}. Random weights, {report['dtype']}, batch "
        f"{report['batch']}, t = {report['timestep']}; median of {report['reps']} calls after warm-up "
        "(JAX: after compilation). A = 4x average pooling; loss = ||A(D(x0(z,t,c))) - y||^2.",
        "",
        "Ratio = PyTorch time / JAX time (> 1: JAX faster), from medians and from minima (the minimum "
        "is the better estimate on a shared machine). Peak memory is the process RSS on CPU "
        "(it includes the ~3.5 GB of UNet and VAE weights; neither side holds a text encoder; "
        + ("each row is measured in its own fresh process, PyTorch and JAX alternating row by row"
           if report.get("isolated") else "RSS rarely shrinks, so later rows include earlier ones")
        + "), device peak on GPU. XLA temp is XLA's planned scratch memory for the computation "
        "(weights excluded).",
        "",
        f"Results are written only on a quiet machine: 1-min load average at most {report.get('max_load')} "
        "before the run and at most that plus one per core (this benchmark's own threads) after it"
        + (" (**this run was forced on a busy machine**)." if report.get("forced") else "."),
        f"Load average at the start: {', '.join(f'{v:.2f}' for v in report['machine']['load_average_at_start'])}.",
        "",
    ]
    if report["machine"]["jax_device"].lower() == "cpu":
        lines += [
            "On XLA:CPU, `remat` saves nothing (jax 0.8.1): XLA:CPU drops the optimization barriers "
            "of `jax.checkpoint` and CSE merges the recomputation back into the forward pass "
            "(a toy MLP compiles to the same number of dots with and without it); its savings are "
            "expected on GPU, not measured here. Where the JAX gradient's time and memory went, and "
            "what changed, is in `docs/scaling.rst` (section \"The SD-size gradient against PyTorch\").",
            "",
        ]
    for size, entry in report["sizes"].items():
        jr, tr = entry["jax"]["results"], (entry.get("torch") or {}).get("results", {})
        load = entry.get("load_average_at_end")
        load_note = [f"1/5/15-min load average at the end: {', '.join(f'{v:.1f}' for v in load)} "
                     f"on {report['machine']['cores']} cores.", ""] if load else []
        lines += [f"## {size} x {size} (latent {int(size) // 8} x {int(size) // 8})", "", *load_note,
                  "| computation | JAX median (min) s | PyTorch median (min) s | ratio median (min) "
                  "| JAX compile (s) | JAX peak (MB) | PyTorch peak (MB) | XLA temp (MB) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for op in OPS:
            if op not in jr:
                continue
            j, t = jr[op], tr.get(op)
            mem = "peak_device_mb" if "peak_device_mb" in j else "peak_rss_mb"
            jt = f"{j['median_s']:.2f} ({j.get('min_s', j['median_s']):.2f})"
            ratio = (f"{t['median_s'] / j['median_s']:.2f} "
                     f"({t.get('min_s', t['median_s']) / j.get('min_s', j['median_s']):.2f})") if t else "-"
            tt = f"{t['median_s']:.2f} ({t.get('min_s', t['median_s']):.2f})" if t else "-"
            tm = f"{t.get('peak_device_mb', t['peak_rss_mb']):.0f}" if t else "-"
            xt = f"{j['xla_temp_mb']:.0f}" if "xla_temp_mb" in j else "-"
            lines.append(f"| {LABELS[op]} | {jt} | {tt} | {ratio} | {j['compile_s']:.1f} "
                         f"| {j[mem]:.0f} | {tm} | {xt} |")
        lines.append("")
    lines += ["Regenerate: `python benchmarks/sd_step.py` (see its docstring for options).", ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(json.loads(argv[1]))
    on_gpu = jax.devices()[0].platform != "cpu"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512] if on_gpu else [256],
                    help="image sizes in pixels (default: 256 on CPU, 256 512 on GPU)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timestep", type=int, default=500)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--remat", choices=["both", "on", "off"], default="both")
    ap.add_argument("--torch-python", default=os.environ.get("DIFFPRIOR_TORCH_PYTHON", "/work/refvenv/bin/python"),
                    help="interpreter with torch + diffusers for the reference half ('' to skip)")
    ap.add_argument("--torch-cpu", action="store_true", help="run PyTorch on the CPU even if CUDA is available")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sd_step.json")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                    help="measure each computation in its own fresh process, JAX and PyTorch alternating "
                         "(default; peak memory is then each computation's own)")
    ap.add_argument("--max-load", type=float, default=QUIET_LOAD,
                    help="refuse to write results when the 1-min load average exceeds this before the run "
                         "or exceeds it plus one busy core per CPU core after a size (default %(default)s)")
    ap.add_argument("--force", action="store_true", help="write results even on a busy machine (marked so)")
    args = ap.parse_args(argv)
    start_load = os.getloadavg()[0]
    if start_load > args.max_load and not args.force:
        print(f"refusing to run: 1-min load average {start_load:.2f} > {args.max_load} (other work on the machine "
              "skews timings; wait, or pass --force)", file=sys.stderr)
        return 2
    remat_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.remat]
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]
    have_torch = bool(args.torch_python) and Path(args.torch_python).exists()

    report = {"benchmark": "sd_step", "config": "SD v1.4 (random weights)", "dtype": args.dtype,
              "max_load": args.max_load, "forced": bool(args.force), "isolated": bool(args.isolate),
              "batch": args.batch, "reps": args.reps, "timestep": args.timestep, "sizes": {},
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "jax": jax.__version__, "jax_device": jax.devices()[0].device_kind,
                          "python": platform.python_version(),
                          "load_average_at_start": list(os.getloadavg())}}
    ops = [op for op in OPS if ("remat" in op) in remat_modes or op == "forward"]
    for size in args.sizes:
        print(f"size {size}:", flush=True)
        entry = {}
        if args.isolate:  # one fresh process per computation and framework, alternating
            for op in ops:
                if have_torch:
                    part = run_torch(args.torch_python, size, args.batch, args.reps, args.timestep, args.dtype,
                                     remat_modes, args.torch_cpu, ops=[op])
                    entry.setdefault("torch", {**part, "results": {}})["results"].update(part["results"])
                part = run_jax_isolated(size, args.batch, args.reps, args.timestep, args.dtype, remat_modes, [op])
                r = part["results"][op]
                print(f"  jax {op:14s} {r['median_s']:8.3f} s  (compile {r['compile_s']:.1f} s, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB)", flush=True)
                entry.setdefault("jax", {**part, "results": {}})["results"].update(part["results"])
        else:
            if have_torch:  # first, so that its memory is released before JAX allocates
                entry["torch"] = run_torch(args.torch_python, size, args.batch, args.reps, args.timestep,
                                           args.dtype, remat_modes, args.torch_cpu)
            entry["jax"] = run_jax(size, args.batch, args.reps, args.timestep, dtype, remat_modes)
        if have_torch:
            report["machine"].update(torch=entry["torch"]["torch"], diffusers=entry["torch"]["diffusers"],
                                     torch_device=entry["torch"]["device_name"])
        if have_torch:
            entry["ratio_torch_over_jax"] = {
                op: entry["torch"]["results"][op]["median_s"] / entry["jax"]["results"][op]["median_s"]
                for op in entry["jax"]["results"] if op in entry["torch"]["results"]}
        entry["load_average_at_end"] = list(os.getloadavg())  # other processes on the machine skew timings
        busy = entry["load_average_at_end"][0] > args.max_load + (os.cpu_count() or 1)
        if busy and not args.force:
            print(f"refusing to write results: 1-min load average {entry['load_average_at_end'][0]:.2f} after the "
                  f"{size} px run exceeds {args.max_load} + {os.cpu_count()} (this benchmark's own threads); "
                  "something else ran beside it", file=sys.stderr)
            return 2
        entry["quiet"] = not busy
        report["sizes"][str(size)] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))  # after each size: a crash keeps what is done
        write_markdown(report, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
