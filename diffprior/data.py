"""Image datasets for training and evaluation: class folders, tar archives, HDF5.

Every reader returns an :class:`ImageSet` — ``uint8`` images ``(N, H, W, 3)`` held once in
memory, integer labels, the class names and each file's name. Captions follow the class:
``"a photo of a {class}"``. Batches come from :func:`batches`, which is seeded and
positionable (epoch, step) so that training resumes exactly where it stopped.

Single image files of any bit depth are read by :func:`read_image` (float32 ``(H, W, C)`` in
``[0, 1]``); the dataset readers use it too and round deeper images to 8 bits.

The CIFAR-10 split convention of this project (``../shared/data/cifar10/README.md``): files
``4900.jpg``-``4999.jpg`` of every class are the validation set and are never trained on.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import DiffpriorError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CAPTION_TEMPLATE = "a photo of a {}"


class DatasetError(DiffpriorError, ValueError):
    """A dataset path is missing, empty or malformed."""


# ----------------------------------------------------------------------------- one image file
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
#: 8-bit PIL modes and the mode each is converted to (alpha is dropped).
_PIL_8BIT = {"L": "L", "LA": "L", "La": "L", "RGB": "RGB", "RGBA": "RGB", "RGBa": "RGB",
             "RGBX": "RGB", "P": "RGB", "PA": "RGB", "YCbCr": "RGB"}
_PIL_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class ImageReadError(DatasetError):
    """An image file cannot be read, or not without losing or inventing information."""


def _file_kind(fp) -> tuple:
    """``("png", bit_depth, colour_type)``, ``("tiff",)`` or ``(None,)`` from a stream's first bytes."""
    pos = fp.tell()
    head = fp.read(26)
    fp.seek(pos)
    if len(head) >= 26 and head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return "png", head[24], head[25]
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF, BigTIFF
        return ("tiff",)
    return (None,)


def _tiff_array(fp, name: str) -> np.ndarray:
    """Read the first image of a TIFF that PIL cannot hold (16-bit colour, float RGB) with tifffile."""
    try:
        import tifffile
    except ImportError:
        raise ImageReadError(f"cannot read image {name}: a TIFF with more than 8 bits per colour "
                             "sample needs the 'tifffile' package") from None
    try:
        with tifffile.TiffFile(fp) as tif:
            page = tif.pages[0]
            photometric = getattr(page.photometric, "name", str(page.photometric))
            arr, axes = page.asarray(), page.axes
    except Exception as e:  # noqa: BLE001 -- tifffile raises many types for corrupt files
        raise ImageReadError(f"cannot decode image {name}: {e}") from None
    if photometric not in ("MINISBLACK", "RGB"):
        raise ImageReadError(f"cannot read image {name}: TIFF photometric {photometric} is not supported "
                             "(expected grayscale or RGB)")
    if axes.startswith("S") and arr.ndim == 3:  # planar configuration: samples first
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):  # extra sample: alpha
        arr = arr[..., :-1]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3)):
        raise ImageReadError(f"cannot read image {name}: TIFF of shape {arr.shape} (axes {axes}) is not "
                             "a single grayscale or RGB image")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255)
    if arr.dtype == np.uint16:
        return (arr.astype(np.float64) / 65535.0).astype(np.float32)
    if arr.dtype.kind == "f":
        return _check_unit_range(arr.astype(np.float32), name, f"{arr.dtype} TIFF")
    raise ImageReadError(f"cannot read image {name}: TIFF samples of type {arr.dtype} are not supported "
                         "(expected uint8, uint16 or float in [0, 1])")


def _check_unit_range(x: np.ndarray, name: str, what: str) -> np.ndarray:
    if x.size and not np.all(np.isfinite(x)):
        raise ImageReadError(f"cannot read image {name}: {what} holds NaN or infinite values")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ImageReadError(f"cannot read image {name}: {what} values [{x.min():g}, {x.max():g}] are "
                             "outside [0, 1] (rescale it to [0, 1] first)")
    return x


def _resize(x: np.ndarray, size) -> np.ndarray:
    """Bicubic resize of a float ``(H, W, C)`` image, channel by channel (PIL mode ``F``)."""
    from PIL import Image

    out = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c]), "F").resize(
        (size[1], size[0]), Image.BICUBIC), np.float32) for c in range(x.shape[-1])]
    return np.clip(np.stack(out, -1), 0.0, 1.0)


def _pil_array(img, name: str, bits: int | None, size) -> np.ndarray:
    """Float ``(H, W, C)`` (C = 1 or 3) of a PIL image at its true bit depth (``bits`` per
    sample as the file header states it, if known)."""
    from PIL import Image

    mode = img.mode
    if mode == "1":
        x = np.asarray(img, np.float32)[..., None]
    elif mode in _PIL_8BIT:
        target = _PIL_8BIT[mode]
        if mode in ("P", "PA"):
            img = img.convert("RGBA")  # applies the palette and any transparency entry
        if img.mode != target:
            img = img.convert(target)
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BICUBIC)  # 8 bits: resized as before
            size = None
        x = np.asarray(img, np.uint8).astype(np.float32) / np.float32(255)
        x = x.reshape(x.shape[:2] + (-1,))
    elif mode in _PIL_16BIT:
        x = (np.asarray(img).astype(np.float64) / 65535.0).astype(np.float32)[..., None]
    elif mode == "I":
        # 32-bit integer mode: PIL uses it for 16-bit grayscale PNGs in some versions
        a = np.asarray(img)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if bits not in (None, 16) or lo < 0 or hi > 65535:
            raise ImageReadError(f"cannot read image {name}: {bits or 32}-bit integer image (PIL mode I, "
                                 f"values [{lo}, {hi}]) has no known white level; save it as 8 or 16 bits")
        x = (a.astype(np.float64) / 65535.0).astype(np.float32)[..., None]
    elif mode == "F":
        x = _check_unit_range(np.asarray(img, np.float32), name, "32-bit float image (PIL mode F)")[..., None]
    else:
        raise ImageReadError(f"cannot read image {name}: PIL mode {mode} is not supported (expected "
                             "grayscale, RGB, RGBA, palette, 16-bit grayscale or float)")
    if size is not None and x.shape[:2] != tuple(size):
        x = _resize(x, size)
    return x


def _read_image(fp, name: str, channels: int | None = 3, size: tuple | None = None) -> np.ndarray:
    from PIL import Image

    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    kind = _file_kind(fp)
    if kind[0] == "png" and kind[1] == 16 and kind[2] in (2, 4, 6):
        # PIL has no 16-bit colour mode: it would silently keep only the high byte of each sample
        raise ImageReadError(
            f"cannot read image {name}: 16-bit {_PNG_COLOUR[kind[2]]} PNG is not supported (PIL keeps only "
            "8 of its 16 bits); save it as a 16-bit TIFF, a 16-bit grayscale PNG or an 8-bit PNG")
    try:
        img = Image.open(fp)
        img.load()
    except Exception as e:  # noqa: BLE001 -- PIL raises many types for corrupt files
        if kind[0] != "tiff":
            raise ImageReadError(f"cannot decode image {name}: {e}") from None
        img = None  # e.g. float RGB TIFF: PIL cannot open it, tifffile can
    bits = kind[1] if kind[0] == "png" else None
    if kind[0] == "tiff" and img is not None:
        bits = max((int(b) for b in np.atleast_1d(img.tag_v2.get(258, ()))), default=None)
    if img is None or (kind[0] == "tiff" and bits and bits > 8 and img.mode not in _PIL_16BIT + ("I", "F")):
        fp.seek(0)  # a TIFF that PIL cannot hold (it would drop bits of 16-bit colour)
        x = _tiff_array(fp, name)
        x = x if x.ndim == 3 else x[..., None]
        if size is not None and x.shape[:2] != tuple(size):
            x = _resize(x, size)
    else:
        x = _pil_array(img, name, bits, size)
    if channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif channels == 1 and x.shape[-1] == 3:  # ITU-R BT.601 luma, as PIL's convert("L")
        x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    return np.ascontiguousarray(x, np.float32)


def read_image(path: str | os.PathLike, channels: int | None = 3, size: tuple | None = None) -> np.ndarray:
    """Read one image file as float32 ``(H, W, C)`` in ``[0, 1]``, scaled by its true bit depth.

    Supported: 8-bit grayscale, RGB, RGBA and palette images (divided by 255); 1-bit images
    (0 or 1); 16-bit grayscale PNG/TIFF (PIL modes ``I;16*``, or ``I`` with values up to
    65535: divided by 65535); 32-bit float images (PIL mode ``F``; values kept and required to
    lie in ``[0, 1]``); 16-bit grayscale/RGB and float TIFF through ``tifffile``. An alpha
    channel is dropped (not composited). Multi-frame files give their first frame.

    Refused with :class:`ImageReadError`: 16-bit colour PNG (PIL can only hold its high byte:
    save it as a 16-bit TIFF), CMYK and other colour spaces, integer images without a known
    white level, float images outside ``[0, 1]``, undecodable files.

    Args:
        path: the image file.
        channels: ``3`` (default): grayscale is replicated to RGB; ``1``: RGB is reduced to
            BT.601 luma; ``None``: the file's own channel count (1 or 3).
        size: ``(H, W)`` to resize to (bicubic; 8-bit images are resized in 8 bits as before,
            deeper ones in float); ``None`` keeps the size.

    Returns:
        float32 array ``(H, W, C)`` with values in ``[0, 1]``.

    Raises:
        ImageReadError: (a :class:`DatasetError`, so a ``ValueError``) naming the file and why.
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    with open(path, "rb") as fp:
        return _read_image(fp, str(path), channels, size)


@dataclass(frozen=True)
class ImageSet:
    """Images held in memory once.

    Attributes:
        images: ``uint8`` array ``(N, H, W, 3)``.
        labels: ``int32`` array ``(N,)`` indexing ``classes``.
        classes: class names, sorted.
        names: file name of each image (e.g. ``"cat/4901.jpg"``).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple
    names: tuple

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def captions(self, template: str = CAPTION_TEMPLATE) -> list[str]:
        """One caption per image from its class name."""
        return [template.format(self.classes[i]) for i in self.labels]

    def subset(self, index) -> "ImageSet":
        """Images at ``index`` (an index array or boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.nonzero(index)[0]
        return ImageSet(self.images[index], self.labels[index], self.classes,
                        tuple(self.names[i] for i in index))

    def as_float(self, index=None) -> np.ndarray:
        """Images (all or ``index``) as float32 in ``[0, 1]``."""
        imgs = self.images if index is None else self.images[np.asarray(index)]
        return imgs.astype(np.float32) / 255.0


def is_cifar_validation(name: str) -> bool:
    """True for the project's CIFAR-10 validation files (``4900``-``4999`` of each class)."""
    stem = Path(name).stem
    return stem.isdigit() and 4900 <= int(stem) <= 4999


def split(data: ImageSet, is_validation: Callable[[str], bool] = is_cifar_validation):
    """Split into ``(train, validation)`` by file name."""
    val = np.array([is_validation(n) for n in data.names], bool)
    return data.subset(~val), data.subset(val)


def _decode(raw: bytes, name: str, size: tuple | None) -> np.ndarray:
    """RGB ``uint8`` of an encoded image at any bit depth (deeper images are rounded to 8 bits)."""
    x = _read_image(io.BytesIO(raw), name, channels=3, size=size)
    return np.rint(x * 255.0).astype(np.uint8)


def _assemble(items: Sequence[tuple[str, str, bytes]], source, size) -> ImageSet:
    if not items:
        raise DatasetError(f"{source}: no images found (expected <class>/<file>{IMAGE_SUFFIXES[0]} entries)")
    items = sorted(items, key=lambda it: (it[0], it[1]))
    classes = tuple(sorted({c for c, _, _ in items}))
    lookup = {c: i for i, c in enumerate(classes)}
    first = _decode(items[0][2], items[0][1], size)
    size = size or first.shape[:2]
    images = np.empty((len(items),) + tuple(size) + (3,), np.uint8)
    for k, (_, name, raw) in enumerate(items):
        images[k] = _decode(raw, name, size)
    labels = np.array([lookup[c] for c, _, _ in items], np.int32)
    names = tuple(f"{c}/{Path(n).name}" for c, n, _ in items)
    return ImageSet(images, labels, classes, names)


def read_image_folder(path: str | os.PathLike, size: tuple | None = None) -> ImageSet:
    """Read ``path/<class>/<image>`` files; images are resized to ``size`` (H, W) if given
    (default: the first image's size)."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    items = [(f.parent.name, f.name, f.read_bytes())
             for f in sorted(path.glob("*/*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    return _assemble(items, path, size)


def read_tar(path: str | os.PathLike, size: tuple | None = None) -> ImageSet:
    """Read a ``.tar``/``.tar.gz`` whose members are ``[prefix/]<class>/<image>``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    items = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                if not m.isfile() or Path(m.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                parts = Path(m.name).parts
                if len(parts) < 2:
                    continue
                items.append((parts[-2], parts[-1], tar.extractfile(m).read()))
    except tarfile.TarError as e:
        raise DatasetError(f"{path}: unreadable archive ({e})") from None
    return _assemble(items, path, size)


def read_hdf5(path: str | os.PathLike, images: str = "images", labels: str | None = "labels",
              classes: str | None = "classes") -> ImageSet:
    """Read an HDF5 image dataset: ``images`` ``(N, H, W, 3)`` uint8 (or float in [0, 1]),
    optional integer ``labels`` and a ``classes`` attribute/dataset of names."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    with h5py.File(path, "r") as f:
        if images not in f:
            raise DatasetError(f"{path}: missing dataset '{images}'")
        arr = f[images][...]
        lab = f[labels][...].astype(np.int32) if labels and labels in f else np.zeros(len(arr), np.int32)
        if classes and classes in f:
            cls = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in f[classes][...])
        elif classes and classes in f[images].attrs:
            cls = tuple(str(c) for c in f[images].attrs[classes])
        else:
            cls = tuple(str(i) for i in range(int(lab.max()) + 1))
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise DatasetError(f"{path}: '{images}' has shape {arr.shape}, expected (N, H, W, 3)")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return ImageSet(arr, lab, cls, tuple(f"{i}" for i in range(len(arr))))


def read_dataset(path: str | os.PathLike, size: tuple | None = None) -> ImageSet:
    """Dispatch on the path: a folder, a ``.tar``/``.tar.gz``/``.tgz`` archive or an HDF5 file."""
    p = Path(path)
    if p.is_dir():
        return read_image_folder(p, size)
    name = p.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return read_tar(p, size)
    if name.endswith((".h5", ".hdf5")):
        return read_hdf5(p)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory")
    raise DatasetError(f"{p}: unknown dataset format (expected a folder, .tar[.gz] or .h5)")


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch`` (a pure function of ``seed`` and ``epoch``)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(n: int, batch_size: int, seed: int, start_step: int = 0, flip: bool = True
            ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Endless seeded stream of ``(step, indices, flip_mask)`` starting at ``start_step``.

    Each epoch is a fresh permutation; the final partial batch of an epoch is dropped, so
    step ``s`` always maps to the same indices and flips: resuming at ``s`` continues the
    exact stream an uninterrupted run would have seen.
    """
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise DatasetError(f"batch size {batch_size} exceeds the dataset size {n}")
    step = start_step
    while True:
        epoch, k = divmod(step, per_epoch)
        perm = epoch_permutation(n, seed, epoch)
        idx = perm[k * batch_size:(k + 1) * batch_size]
        flips = (np.random.default_rng([seed, epoch, k, 1]).random(batch_size) < 0.5) if flip else \
            np.zeros(batch_size, bool)
        yield step, idx, flips
        step += 1


def apply_flips(images: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Horizontally flip the images (``(B, H, W, C)``) where ``flips`` is true."""
    return np.where(flips[:, None, None, None], images[:, :, ::-1], images)
