"""PyTorch/diffusers half of ``benchmarks/sd_step.py`` (run by it in a torch environment).

Reads a JSON job on stdin (configs, image size, timestep, reps, ...) and prints one JSON
line with the timings and peak memory of the same three computations as the JAX side:
UNet forward, and the gradient of ``||A(D(x0(z, t, c))) - y||^2`` with respect to the text
embedding ``c`` and to the latent ``z`` (``A`` = 4x average pooling), with and without
diffusers' gradient checkpointing (``"ops"`` in the job: only those). Needs only torch +
diffusers (not diffprior).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time


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


def main():
    job = json.loads(sys.stdin.read())
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.set_num_threads(job.get("threads") or os.cpu_count())
    dev = torch.device("cuda" if torch.cuda.is_available() and not job.get("cpu") else "cpu")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[job["dtype"]]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    unet = UNet2DConditionModel.from_config(job["unet_config"]).to(dev, dtype).eval().requires_grad_(False)
    vae = AutoencoderKL.from_config(job["vae_config"]).to(dev, dtype).eval().requires_grad_(False)
    init_s = time.perf_counter() - t0

    size, n, f = job["size"], job["batch"], 8
    h = size // f
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 4, h, h, generator=g).to(dev, dtype)
    c = torch.randn(n, job["text_len"], job["unet_config"]["cross_attention_dim"], generator=g).to(dev, dtype)
    y = torch.full((n, 3, size // 4, size // 4), 0.5, device=dev, dtype=dtype)
    t = torch.full((n,), job["timestep"], device=dev, dtype=torch.long)
    a = job["alpha_bar"]
    scale = job["vae_config"]["scaling_factor"]

    def forward():
        with torch.no_grad():
            return unet(z, t, encoder_hidden_states=c).sample

    def loss(z_, c_):
        eps = unet(z_, t, encoder_hidden_states=c_).sample
        x0 = (z_ - (1 - a) ** 0.5 * eps) / a ** 0.5
        img = (vae.decode(x0 / scale).sample + 1) / 2
        return ((F.avg_pool2d(img, 4) - y) ** 2).sum()

    def grad_c():
        c_ = c.detach().requires_grad_(True)
        return torch.autograd.grad(loss(z, c_), c_)[0]

    def grad_z():
        z_ = z.detach().requires_grad_(True)
        return torch.autograd.grad(loss(z_, c), z_)[0]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def measure(fn):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with PeakRSS() as mem:
            fn()
            sync()
        warm = time.perf_counter() - t0
        times = []
        with PeakRSS() as mem:
            for _ in range(job["reps"]):
                t0 = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - t0)
        out = {"median_s": statistics.median(times), "min_s": min(times), "times_s": times, "first_call_s": warm,
               "peak_rss_mb": mem.peak / 2**20}
        if dev.type == "cuda":
            out["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out

    wanted = set(job.get("ops") or ["forward", "grad_c", "grad_z", "grad_c_remat", "grad_z_remat"])
    res = {"forward": measure(forward)} if "forward" in wanted else {}
    for remat in job["remat"]:
        for m in (unet, vae):
            (m.enable_gradient_checkpointing if remat else m.disable_gradient_checkpointing)()
        suffix = "_remat" if remat else ""
        for name, fn in (("grad_c", grad_c), ("grad_z", grad_z)):
            if name + suffix in wanted:
                res[name + suffix] = measure(fn)
    import diffusers

    print(json.dumps({"results": res, "init_s": init_s, "device": str(dev),
                      "device_name": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                      "torch": torch.__version__, "diffusers": diffusers.__version__,
                      "threads": torch.get_num_threads(),
                      "attention": type(unet.attn_processors[next(iter(unet.attn_processors))]).__name__}))


if __name__ == "__main__":
    main()
