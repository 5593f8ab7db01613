"""The Inception-v3 network of the Fréchet Inception Distance, as pytorch-fid runs it.

:class:`FIDInceptionV3` is a channel-last ``flax.linen`` port of the Inception-v3
:cite:`szegedy2016inception` that ``pytorch_fid.inception.InceptionV3([3])`` builds with
``use_fid_inception=True``: the TensorFlow Inception graph of 2015-12-05 that the original
FID code used, with its differences from torchvision's Inception-v3 (the average pools of
the A, C and first E blocks ignore the zero padding; the last E block max-pools instead),
cut after the final average pool, so that it returns the 2048-dimensional "pool3"
features. Inputs are ``[0, 1]`` images of any size: they are bilinearly resized to
299 x 299 (half-pixel centres, no antialiasing, as
``torch.nn.functional.interpolate(..., align_corners=False)``) and mapped to ``[-1, 1]``.

Weights are the user's: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a torch
``state_dict``), converted once to safetensors with the same tensor names::

    python -m diffprior.inception convert pt_inception-2015-12-05-6726825d.pth fid_inception.safetensors

(the only step that needs torch). :func:`load_weights` reads the safetensors file with
``safetensors.numpy`` and refuses a file of another layout, naming the first tensor that
is missing, unexpected or of the wrong shape. Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple, Union

import numpy as np

import jax
import jax.numpy as jnp
import flax.linen as nn

from .errors import DiffpriorError

__all__ = [
    "FIDInceptionV3",
    "InceptionWeightsError",
    "FEATURE_DIM",
    "INPUT_SIZE",
    "PYTORCH_FID_FILE",
    "bilinear_matrix",
    "resize_bilinear",
    "weight_layout",
    "variables_from_state_dict",
    "load_weights",
    "convert",
    "main",
]

#: Side of the square input of the network (images are resized to it).
INPUT_SIZE = 299
#: Dimension of the pool3 features.
FEATURE_DIM = 2048
#: File name of pytorch-fid's weights (torch ``state_dict``); its 8 hex digits are the start
#: of the file's SHA-256 (torch hub's naming convention).
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
_PYTORCH_FID_SHA256_PREFIX = "6726825d"

#: torchvision's ``BasicConv2d`` batch norm epsilon.
BN_EPS = 1e-3
#: Tensors that a converted state dict may carry but the pool3 features do not use: the
#: 1008-way classifier and the batch norms' update counters.
_OPTIONAL = {"fc.weight": (1008, FEATURE_DIM), "fc.bias": (1008,)}
_COUNTER = ".num_batches_tracked"

_HI = jax.lax.Precision.HIGHEST


class InceptionWeightsError(DiffpriorError, ValueError):
    """An FID Inception weights file that is missing, unreadable, or of another layout."""


# ----------------------------------------------------------------------------- network
class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (inference statistics, eps 0.001), ReLU."""

    features: int
    kernel: Tuple[int, int]
    stride: int = 1
    padding: Tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                    padding=((ph, ph), (pw, pw)), use_bias=False, precision=_HI, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return jax.nn.relu(x)


def _avg_pool_3x3(x):
    """3 x 3, stride 1, padding 1 average that ignores the padding (TensorFlow's SAME average)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, stride: int, pad: int):
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
    """35 x 35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool (padding excluded)-1x1."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: stride-2 3x3 | 1x1-3x3-stride-2 3x3 | stride-2 max pool."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (1x7 and 7x1); pool excludes padding."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
        b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c, row[0], padding=row[1], name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, col[0], padding=col[1], name="branch7x7_3")(b7)
        bd = BasicConv2d(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c, col[0], padding=col[1], name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c, row[0], padding=row[1], name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c, col[0], padding=col[1], name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, row[0], padding=row[1], name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1-stride-2 3x3 | 1x1-1x7-7x1-stride-2 3x3 | stride-2 max pool."""

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv2d(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 branches; the pool branch averages (padding
    excluded: pytorch-fid's ``FIDInceptionE_1``) or, with `max_pool`, takes the maximum
    (``FIDInceptionE_2``, as the TensorFlow graph does)."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = _max_pool_3x3(x, 1, 1) if self.max_pool else _avg_pool_3x3(x)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` float64 matrix of 1-D linear interpolation with half-pixel centres.

    Output sample ``i`` reads the input at :math:`s = (i + 1/2)\\, n_{in}/n_{out} - 1/2`,
    clamped below at 0, between pixels :math:`\\lfloor s \\rfloor` and the next one (the
    last pixel where there is none): ``torch.nn.functional.interpolate`` with
    ``mode="bilinear", align_corners=False`` and no antialiasing, along one axis. For
    downsampling this samples, it does not average.
    """
    s = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = s - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resize_bilinear(x, size: Tuple[int, int]):
    """Resize ``(N, H, W, C)`` images to ``size = (H', W')`` with :func:`bilinear_matrix`
    along each axis (separable, so identical to 2-D bilinear interpolation)."""
    H, W = x.shape[1:3]
    if (H, W) == tuple(size):
        return x
    mh = jnp.asarray(bilinear_matrix(H, size[0]), x.dtype)
    mw = jnp.asarray(bilinear_matrix(W, size[1]), x.dtype)
    return jnp.einsum("ph,nhwc,qw->npqc", mh, x, mw, precision=_HI)


class FIDInceptionV3(nn.Module):
    """Inception-v3 up to the 2048-d pool3 features, with pytorch-fid's FID blocks.

    ``(N, H, W, 3)`` float images in ``[0, 1]`` -> ``(N, 2048)`` features. Module names
    follow torchvision's ``Inception3`` (``Conv2d_1a_3x3``, ``Mixed_5b``, ..., each
    ``BasicConv2d`` with ``conv`` and ``bn``), so a pytorch-fid ``state_dict`` maps onto the
    variables by renaming alone (:func:`variables_from_state_dict`). Batch norms use their
    stored statistics (collection ``batch_stats``).

    Attributes:
        resize_input: Bilinearly resize inputs to 299 x 299 first (:func:`resize_bilinear`).
        normalize_input: Map inputs from ``[0, 1]`` to ``[-1, 1]`` (after resizing).
    """

    resize_input: bool = True
    normalize_input: bool = True

    @nn.compact
    def __call__(self, x):
        if self.resize_input:
            x = resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
        if self.normalize_input:
            x = 2.0 * x - 1.0
        x = BasicConv2d(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x, 2, 0)
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3(x, 2, 0)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(c, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))  # adaptive average pool to 1 x 1


# ----------------------------------------------------------------------------- weights
#: flax leaf -> (collection, torch suffix)
_LEAVES = (("params", "conv", "kernel", "conv.weight"), ("params", "bn", "scale", "bn.weight"),
           ("params", "bn", "bias", "bn.bias"), ("batch_stats", "bn", "mean", "bn.running_mean"),
           ("batch_stats", "bn", "var", "bn.running_var"))


def _conv_paths(tree, prefix=()) -> list:
    """Paths of the ``BasicConv2d`` modules in a params tree, in creation order."""
    if "conv" in tree and "bn" in tree:
        return [prefix]
    return [p for k, v in tree.items() for p in _conv_paths(v, prefix + (k,))]


@functools.lru_cache(maxsize=1)
def _layout() -> Tuple[Tuple[str, Tuple[str, ...], str, Tuple[int, ...]], ...]:
    """``(torch name, module path, flax leaf, torch shape)`` of every tensor the network uses."""
    shapes = jax.eval_shape(FIDInceptionV3(resize_input=False).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
    out = []
    for path in _conv_paths(shapes["params"]):
        for coll, mod, leaf, suffix in _LEAVES:
            node = shapes[coll]
            for k in path + (mod,):
                node = node[k]
            shape = tuple(node[leaf].shape)
            if leaf == "kernel":  # (kh, kw, in, out) -> torch (out, in, kh, kw)
                shape = (shape[3], shape[2], shape[0], shape[1])
            out.append((".".join(path) + "." + suffix, path + (mod,), coll + "/" + leaf, shape))
    return tuple(out)


def weight_layout() -> Dict[str, Tuple[int, ...]]:
    """Torch tensor name -> shape of every tensor the pool3 features need, in network order
    (94 convolutions, each with ``conv.weight`` and ``bn.weight``, ``bn.bias``,
    ``bn.running_mean``, ``bn.running_var``). A weights file may also hold the classifier
    ``fc.weight`` ``(1008, 2048)`` and ``fc.bias`` ``(1008,)`` and the batch norms'
    ``num_batches_tracked`` counters, which are ignored."""
    return {name: shape for name, _, _, shape in _layout()}


def _check_layout(tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Raise :class:`InceptionWeightsError` naming the first tensor that does not fit."""
    hint = (f"expected pytorch-fid's Inception weights ({PYTORCH_FID_FILE}) converted with "
            "'python -m diffprior.inception convert'")
    layout = weight_layout()
    for name, shape in layout.items():
        if name not in tensors:
            raise InceptionWeightsError(f"{source}: missing tensor {name} of shape {shape}; {hint}")
        got = tuple(np.shape(tensors[name]))
        if got != shape:
            raise InceptionWeightsError(f"{source}: tensor {name} has shape {got}, expected {shape}; {hint}")
    for name in tensors:
        if name in layout or (name.endswith(_COUNTER) and name[: -len(_COUNTER)] + ".weight" in layout):
            continue
        if name in _OPTIONAL:
            got = tuple(np.shape(tensors[name]))
            if got != _OPTIONAL[name]:
                raise InceptionWeightsError(
                    f"{source}: tensor {name} has shape {got}, expected {_OPTIONAL[name]}; {hint}")
            continue
        raise InceptionWeightsError(f"{source}: unexpected tensor {name} of shape "
                                    f"{tuple(np.shape(tensors[name]))}; {hint}")
    for name in layout:
        if not np.issubdtype(np.asarray(tensors[name]).dtype, np.floating):
            raise InceptionWeightsError(f"{source}: tensor {name} has dtype {np.asarray(tensors[name]).dtype}, "
                                        f"expected floating point; {hint}")


def variables_from_state_dict(tensors: Mapping[str, np.ndarray], source: str = "state dict") -> dict:
    """Flax variables (``{"params": ..., "batch_stats": ...}``, float32 numpy) of
    :class:`FIDInceptionV3` from a pytorch-fid ``state_dict`` given as numpy arrays.

    Raises:
        InceptionWeightsError: Naming the first tensor that is missing, unexpected, of the
            wrong shape or not floating point (`source` names the file in the message).
    """
    _check_layout(tensors, source)
    out: dict = {"params": {}, "batch_stats": {}}
    for name, path, leaf, _ in _layout():
        coll, key = leaf.split("/")
        a = np.asarray(tensors[name], np.float32)
        if key == "kernel":
            a = np.ascontiguousarray(a.transpose(2, 3, 1, 0))
        node = out[coll]
        for k in path:
            node = node.setdefault(k, {})
        node[key] = a
    return out


def load_weights(path: Union[str, os.PathLike]) -> dict:
    """Read the FID Inception weights from a safetensors file (pytorch-fid's tensor names).

    Args:
        path: The file that ``python -m diffprior.inception convert`` wrote (any safetensors
            file with the tensors of :func:`weight_layout` works).

    Returns:
        The Flax variables of :class:`FIDInceptionV3` (numpy float32 arrays).

    Raises:
        InceptionWeightsError: If the file is missing, is not a safetensors file, or has
            another layout (the message names the first tensor that does not fit).
    """
    path = Path(path)
    if not path.is_file():
        raise InceptionWeightsError(f"FID Inception weights not found: {path}" +
                                    (" (a folder; expected a .safetensors file)" if path.is_dir() else ""))
    if path.suffix == ".pth":
        raise InceptionWeightsError(
            f"{path} is a torch checkpoint: convert it once with 'python -m diffprior.inception convert "
            f"{path} {path.with_suffix('.safetensors')}' (needs torch) and pass the .safetensors file")
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 -- safetensors raises its own and OS errors
        raise InceptionWeightsError(f"{path} is not a readable safetensors file "
                                    f"({type(e).__name__}: {' '.join(str(e).split())})") from e
    return variables_from_state_dict(tensors, str(path))


# ----------------------------------------------------------------------------- conversion
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(src: Union[str, os.PathLike], dst: Union[str, os.PathLike]) -> str:
    """Convert pytorch-fid's torch weights file to safetensors (needs torch; run once).

    The state dict is loaded with ``torch.load(..., weights_only=True)`` (no pickled code
    runs), checked against :func:`weight_layout`, and the tensors the features use are
    written to `dst` as float32 under their torch names (the classifier and the batch norm
    counters are left out).

    Returns:
        The SHA-256 of `src` (pytorch-fid's file has one starting with ``6726825d``).

    Raises:
        ImportError: Without torch.
        InceptionWeightsError: If `src` is missing, unreadable or of another layout.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InceptionWeightsError(f"no such file: {src}")
    try:
        import torch
    except ImportError as e:
        raise ImportError("converting the .pth file needs torch (pip install torch, CPU build is enough); "
                          "reading the converted file does not") from e
    try:
        state = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint
        raise InceptionWeightsError(f"{src} is not a readable torch state dict "
                                    f"({type(e).__name__}: {' '.join(str(e).split())})") from e
    if not isinstance(state, Mapping):
        raise InceptionWeightsError(f"{src} holds a {type(state).__name__}, expected a state dict")
    tensors = {k: v.detach().cpu().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}
    _check_layout(tensors, str(src))
    from safetensors.numpy import save_file

    digest = _sha256(src)
    out = {k: np.ascontiguousarray(tensors[k], np.float32) for k in weight_layout()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    save_file(out, str(tmp), metadata={"source": src.name, "source_sha256": digest,
                                        "network": "pytorch-fid InceptionV3 (FID blocks), pool3"})
    os.chmod(tmp, 0o644)  # safetensors creates files readable by their owner only
    os.replace(tmp, dst)
    return digest


def main(argv: Sequence[str] = None) -> int:
    """``python -m diffprior.inception convert IN.pth OUT.safetensors``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m diffprior.inception",
        description="Convert pytorch-fid's Inception weights (a torch state dict) to the safetensors file "
                    "that diffprior's FID reads. Needs torch; run once.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = sub.add_parser("convert", help="convert a .pth state dict to .safetensors",
                       description=f"Convert pytorch-fid's {PYTORCH_FID_FILE} (or any state dict of the same "
                                   "layout) to safetensors.")
    c.add_argument("src", metavar="IN.pth", help="pytorch-fid's weights file")
    c.add_argument("dst", metavar="OUT.safetensors", help="where to write the converted weights")
    args = p.parse_args(argv)
    try:
        digest = convert(args.src, args.dst)
    except (InceptionWeightsError, ImportError, OSError) as e:
        print(f"{p.prog} convert: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst} ({len(weight_layout())} tensors) from {args.src} (sha256 {digest[:16]}...)")
    if not digest.startswith(_PYTORCH_FID_SHA256_PREFIX):
        print(f"note: this is not pytorch-fid's {PYTORCH_FID_FILE} (whose SHA-256 starts with "
              f"{_PYTORCH_FID_SHA256_PREFIX}): FID values will not be comparable with published ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
