"""``diffprior simulate``: write a problem file from images and a task preset.

Reads images (a folder of image files, a folder of class folders, a ``.tar[.gz]`` archive,
an HDF5 dataset or a single image file), builds the forward operator of the chosen
:mod:`task preset <diffprior.tasks>`, simulates noisy measurements
:math:`y_n = A x_n + \\sigma \\varepsilon_n` and writes a problem file
(:func:`diffprior.io.write_problem`, ground truth included).

Randomness is explicit and reproducible. A task with random parts (mask, motion kernel)
draws them for each image, as DPS and P2L do: image ``n`` (its index in the sorted input)
gets the draw of ``fold_in(PRNGKey(seed), n)``, and the file stores one operator whose
kernels or masks carry the sample axis (:meth:`diffprior.tasks.TaskPreset.build_batch`);
``--shared-operator`` draws one from ``PRNGKey(seed)`` for all images. The noise of sample
``n`` comes from ``jax.random.PRNGKey(seeds[n])``, where ``seeds[n] = sample_seed(seed, n)``
is stored in the file. So a sample's measurement depends only on its image, ``--seed`` and
``n``, not on ``--limit``. The file records the task's name, from which ``diffprior solve``
takes its solver preset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np

from . import CLIError, wrap
from ..tasks import TASKS

__all__ = ["add_parser", "run", "sample_seed", "load_images", "simulate_measurements"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_SIGMA = 0.005


def sample_seed(seed: int, index: int) -> int:
    """The noise seed of sample `index` for run seed `seed` (a 31-bit integer).

    Derived with :class:`numpy.random.SeedSequence` from ``[seed, index]``, so seeds of
    different samples and runs are decorrelated.
    """
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0] >> 1)


def _parse_size(text: str) -> Tuple[int, int]:
    parts = text.lower().split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H or HxW (e.g. 32 or 32x48), got {text!r}") from None
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1:
        raise argparse.ArgumentTypeError(f"expected H or HxW with positive sides, got {text!r}")
    return hw


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


def _pos_int(text: str) -> int:
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _sigma(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return v


def _read_image_file(path: Path, size, channels=3) -> np.ndarray:
    """One image file as float32 ``(H, W, C)`` in ``[0, 1]`` at its true bit depth
    (:func:`diffprior.data.read_image`: 16-bit and float files are not clipped); ``channels``
    3, 1 or ``None`` (the file's own)."""
    from ..data import DatasetError, read_image

    try:
        return read_image(path, channels=channels, size=size)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot read image {path}: {e}") from None


def _resize_all(images: np.ndarray, size) -> np.ndarray:
    from PIL import Image

    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.BICUBIC), np.uint8)
                     for im in images])


def centre_crop(image: np.ndarray, size, name: str = "image") -> np.ndarray:
    """The centred ``(H, W)`` window of ``image`` ``(h, w, C)``.

    Raises:
        CLIError: the image is smaller than ``size`` (names both).
    """
    h, w = image.shape[:2]
    H, W = int(size[0]), int(size[1])
    if h < H or w < W:
        raise CLIError(f"{name} is {h}x{w}, smaller than the crop {H}x{W}")
    r, c = (h - H) // 2, (w - W) // 2
    return image[r:r + H, c:c + W]


def load_images(path, size=None, limit=None, crop=None, channels=3) -> Tuple[List[np.ndarray], List[str]]:
    """Read images as float32 ``(H, W, C)`` arrays in ``[0, 1]`` with their names, sorted by name.

    Image files keep their own size (and, with ``channels=None``, their own channel count)
    unless ``size`` resizes them or ``crop`` cuts their centre, so a folder may give images of
    several shapes (:func:`group_by_shape`). Datasets (class folders, archives, HDF5) are read
    as RGB at one size (``size``, default the first image's).

    Args:
        path: A folder of image files, a folder of ``<class>/<image>`` folders, a
            ``.tar``/``.tar.gz`` archive or ``.h5`` dataset (:func:`diffprior.data.read_dataset`),
            or one image file.
        size: ``(H, W)`` to resize to (bicubic); default: each image's own size.
        limit: Keep only the first `limit` images.
        crop: ``(H, W)`` centre crop (after ``size``); an image smaller than it is refused.
        channels: 3 (RGB; grayscale replicated), 1 (grayscale; RGB reduced to luma) or
            ``None`` (each file's own, 1 or 3).

    Raises:
        CLIError: If the path is missing, holds no images or an image is unreadable.
    """
    from ..data import DatasetError, read_dataset

    p = Path(path)
    if not p.exists():
        raise CLIError(f"no such file or directory: {p}")
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = []
    if files:
        files = files[:limit] if limit else files
        images = [_read_image_file(f, size, channels) for f in files]
        names = [f.name for f in files]
    else:
        try:
            data = read_dataset(p, size)
        except DatasetError as e:
            raise CLIError(str(e)) from None
        images, names = data.images, list(data.names)
        if limit:
            images, names = images[:limit], names[:limit]
        images = list(_resize_all(images, size).astype(np.float32) / 255.0)
        if channels == 1:
            images = [(im @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] for im in images]
    if crop is not None:
        images = [centre_crop(im, crop, n) for im, n in zip(images, names)]
    return images, names


def group_by_shape(images: List[np.ndarray]) -> dict:
    """``{(H, W, C): [indices]}`` in order of first appearance."""
    groups: dict = {}
    for n, im in enumerate(images):
        groups.setdefault(tuple(int(s) for s in im.shape), []).append(n)
    return groups


def group_path(out: Path, shape) -> Path:
    """The problem file of one shape group when a folder holds several: ``<stem>-HxWxC<suffix>``."""
    out = Path(out)
    return out.with_name(f"{out.stem}-{'x'.join(map(str, shape))}{out.suffix or '.h5'}")


def simulate_measurements(A, images, sigma: float, seeds, chunk: int = 64) -> np.ndarray:
    """``A(x_n) + sigma * N(0, I)`` per image, the noise from ``jax.random.PRNGKey(seeds[n])``.

    Args:
        A: Operator on one image ``(H, W, C)`` (applied to each), or an operator of
            :mod:`operators` on the whole batch ``(N, H, W, C)`` (per-sample kernels or masks).
        images: ``(N, H, W, C)`` images in ``[0, 1]``.
        sigma: Noise standard deviation in ``[0, 1]`` image units.
        seeds: ``(N,)`` integer seeds.
        chunk: Images per vectorised call.

    Returns:
        ``(N, ...)`` float32 measurements.
    """
    import jax
    import jax.numpy as jnp

    from operators import add_noise

    def noisy(op, x, s):
        y = op(x) if len(op.input_shape) == 4 else jax.vmap(op)(x)
        return jax.vmap(lambda yi, si: add_noise(jax.random.PRNGKey(si), yi, sigma))(y, s)

    f = jax.jit(noisy)  # the operator is traced data: one program per chunk shape
    seeds = np.asarray(seeds, np.int64)
    out = []
    for i in range(0, len(images), chunk):
        idx = np.arange(i, min(i + chunk, len(images)))
        op = A.take(idx) if len(A.input_shape) == 4 else A
        out.append(np.asarray(f(op, jnp.asarray(images[idx]), jnp.asarray(seeds[idx], jnp.uint32))))
    return np.concatenate(out).astype(np.float32)


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``simulate`` on the sub-command parsers `sub`."""
    tasks = "\n".join(f"  {name:<17} {t.summary}" for name, t in TASKS.items())
    p = sub.add_parser(
        "simulate",
        help="write a problem file (measurements + ground truth) from images and a task preset",
        description=wrap("Read images, build the forward operator of a task preset, simulate noisy "
                     "measurements y_n = A x_n + sigma * noise_n with per-sample seeds derived from "
                     "--seed, and write a problem file with the ground truth."),
        epilog=(wrap("tasks (pixel-sized parameters are the papers' at 256 px and above and shrink "
                     "with the image below; the documentation's CLI page lists them):") + "\n" + tasks +
                "\n\nexample:\n  diffprior simulate images/ --task sr4 --out problems.h5 --limit 8"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", metavar="IMAGES",
                   help="a folder of images, a folder of class folders, a .tar[.gz] archive, an .h5 "
                        "dataset (uint8 'images' (N, H, W, 3)) or one image file; images of several shapes "
                        "give one problem file per shape, OUT-HxWxC.h5")
    p.add_argument("--task", required=True, choices=list(TASKS), metavar="TASK",
                   help=f"forward model preset, one of: {', '.join(TASKS)} (listed below)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="problem file to write (HDF5, schema of diffprior.io; replaced if it exists)")
    p.add_argument("--sigma", type=_sigma, default=DEFAULT_SIGMA, metavar="S",
                   help="measurement noise standard deviation in [0, 1] image units (default "
                        f"{DEFAULT_SIGMA}: the papers' 0.01 on [-1, 1] images)")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="S",
                   help="seed of the operator's random parts and of the per-sample noise seeds "
                        "(default 0)")
    p.add_argument("--shared-operator", action="store_true",
                   help="draw one mask / motion kernel for all images (default: one per image, as the papers)")
    p.add_argument("--limit", type=_pos_int, default=None, metavar="N",
                   help="use only the first N images (sorted by name)")
    p.add_argument("--size", type=_parse_size, default=None, metavar="H[xW]",
                   help="resize images to H x H (or H x W), bicubic; default: each image keeps its size")
    p.add_argument("--crop", type=_parse_size, default=None, metavar="H[xW]",
                   help="cut the centred H x H (or H x W) window of each image (after --size); smaller images "
                        "are refused")
    p.add_argument("--channels", choices=("auto", "1", "3"), default="auto",
                   help="image channels: each file's own (auto, default: grayscale stays grayscale), 1 (RGB "
                        "reduced to luma) or 3 (grayscale replicated); archives and datasets are RGB")
    p.set_defaults(func=run)
    return p


def run(args) -> None:
    """Run ``diffprior simulate`` with parsed arguments."""
    t0 = time.perf_counter()
    task = TASKS[args.task]
    channels = {"auto": None, "1": 1, "3": 3}[args.channels]
    images, names = load_images(args.images, args.size, args.limit, args.crop, channels)
    groups = group_by_shape(images)
    for shape in groups:
        try:
            task.check_shape(shape)
        except ValueError as e:
            raise CLIError(f"{e} or --crop") from None

    import jax

    from operators import describe

    from ..io import write_problem

    key = jax.random.PRNGKey(args.seed)
    if len(groups) > 1:
        print(f"{len(images)} images of {len(groups)} shapes: one problem file per shape (a problem file holds "
              f"images of one shape)")
    for shape, idx in groups.items():
        out = Path(args.out) if len(groups) == 1 else group_path(args.out, shape)
        batch = np.stack([images[n] for n in idx])
        # image n keeps its draw and its noise seed whatever the other images (fold_in(key, n))
        A = task.build_batch(shape, key, len(idx), shared=args.shared_operator, indices=idx)
        seeds = np.array([sample_seed(args.seed, n) for n in idx], np.int64)
        y = simulate_measurements(A, batch, args.sigma, seeds)
        write_problem(out, y, describe(A), args.sigma, ground_truth=batch, seeds=seeds,
                      names=[names[n] for n in idx], task=task.name, per_sample=A.per_sample)
        params = ", ".join(f"{k}={v}" for k, v in task.parameters(shape).items())
        drawn = " per image" if A.per_sample else ""
        print(f"wrote {out}: {len(idx)} samples, task {task.name} ({type(A).__name__}{drawn}: {params}), "
              f"images {'x'.join(map(str, shape))} -> measurements {'x'.join(map(str, y.shape[1:]))}, "
              f"sigma {args.sigma:g}, seed {args.seed} ({time.perf_counter() - t0:.1f} s)")
