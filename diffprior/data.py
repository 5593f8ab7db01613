"""Image datasets for training and evaluation: class folders, tar archives, HDF5.

Every reader returns an :class:`ImageSet` — ``uint8`` images ``(N, H, W, 3)`` held once in
memory, integer labels, the class names and each file's name. Captions follow the class:
``"a photo of a {class}"``. Batches come from :func:`batches`, which is seeded and
positionable (epoch, step) so that training resumes exactly where it stopped.

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

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CAPTION_TEMPLATE = "a photo of a {}"


class DatasetError(ValueError):
    """A dataset path is missing, empty or malformed."""


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
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(raw)).convert("RGB")
    except Exception as e:  # PIL raises many types for corrupt files
        raise DatasetError(f"cannot decode image {name}: {e}") from None
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BICUBIC)
    return np.asarray(img, np.uint8)


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
