"""Image files are read at their true bit depth (:func:`diffprior.data.read_image`).

A 16-bit image used to be converted with PIL's ``convert("RGB")``, which clips every value
above 255 to 255: almost every pixel became 1.0 without a word.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from diffprior.commands.simulate import load_images


def _read_image(*args, **kwargs):
    from diffprior.data import read_image  # imported here so each test fails on its own

    return read_image(*args, **kwargs)


def _png_by_hand(path, arr: np.ndarray, color_type: int):
    """Write a 16-bit PNG without any imaging library (PIL cannot hold 16-bit colour)."""
    h, w = arr.shape[:2]
    rows = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


GRAY16 = np.array([[0, 65535, 32768], [1, 257, 40000]], np.uint16)


def test_16bit_grayscale_png_is_not_clipped(tmp_path):
    Image.fromarray(GRAY16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = _read_image(tmp_path / "g16.png")
    assert x.dtype == np.float32 and x.shape == (2, 3, 3)
    np.testing.assert_allclose(x[..., 0], GRAY16 / 65535.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])  # grey replicated to RGB
    assert x.max() == 1.0 and abs(x[0, 2, 0] - 0.5) < 1e-4
    native = _read_image(tmp_path / "g16.png", channels=None)
    assert native.shape == (2, 3, 1)


def test_simulate_reads_16bit_png_without_clipping(tmp_path):
    """The reported defect: ``diffprior simulate`` on a 16-bit PNG clipped 99.6 % of pixels."""
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    images, names = load_images(tmp_path / "ramp.png")
    images = np.stack(images)
    assert images.shape == (1, 64, 64, 3) and names == ["ramp.png"]
    np.testing.assert_allclose(images[0, ..., 1], ramp / 65535.0, atol=1e-7)
    gray, _ = load_images(tmp_path / "ramp.png", channels=None)  # the file's own channel: full 16-bit precision
    assert gray[0].shape == (64, 64, 1)
    np.testing.assert_allclose(gray[0][..., 0], ramp / 65535.0, atol=1e-7)
    assert np.mean(images == 1.0) < 0.01
    assert abs(float(np.median(images)) - 0.5) < 0.01


def test_8bit_modes_exact(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(_read_image(tmp_path / "rgb.png"), rgb / np.float32(255))

    rgba = np.concatenate([rgb, rng.integers(0, 256, (5, 7, 1), np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(_read_image(tmp_path / "rgba.png"), rgb / np.float32(255))  # alpha dropped

    gray = rng.integers(0, 256, (5, 7), np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    x = _read_image(tmp_path / "l.png")
    np.testing.assert_array_equal(x, np.repeat(gray[..., None], 3, -1) / np.float32(255))
    assert _read_image(tmp_path / "l.png", channels=None).shape == (5, 7, 1)

    palette = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], np.uint8)
    idx = rng.integers(0, 3, (5, 7), np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(palette.ravel().tolist())
    p.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(_read_image(tmp_path / "p.png"), palette[idx] / np.float32(255))

    bits = rng.random((5, 7)) < 0.5
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    np.testing.assert_array_equal(_read_image(tmp_path / "b.png", channels=None)[..., 0], bits.astype(np.float32))


def test_float_tiff_kept_or_refused(tmp_path):
    f = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(_read_image(tmp_path / "f.tif", channels=None)[..., 0], f)
    Image.fromarray(f * 4 - 1, "F").save(tmp_path / "bad.tif")
    with pytest.raises(ValueError, match=r"bad\.tif.*outside \[0, 1\]"):
        _read_image(tmp_path / "bad.tif")


def test_16bit_colour_png_refused_not_truncated(tmp_path):
    """PIL opens a 48-bit PNG as 8-bit RGB, dropping the low byte: refuse it instead."""
    rgb = np.array([[[0, 32768, 65535], [1000, 2000, 3000]]], np.uint16)
    _png_by_hand(tmp_path / "rgb48.png", rgb, color_type=2)
    with pytest.raises(ValueError, match=r"rgb48\.png.*16-bit RGB"):
        _read_image(tmp_path / "rgb48.png")
    _png_by_hand(tmp_path / "rgba64.png", np.concatenate([rgb, rgb[..., :1]], -1), color_type=6)
    with pytest.raises(ValueError, match=r"rgba64\.png.*16-bit RGBA"):
        _read_image(tmp_path / "rgba64.png")


def test_16bit_colour_tiff_read(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb = np.array([[[0, 32768, 65535], [1000, 2000, 3000]]], np.uint16)
    tifffile.imwrite(tmp_path / "rgb48.tif", rgb, photometric="rgb")
    np.testing.assert_allclose(_read_image(tmp_path / "rgb48.tif"), rgb / 65535.0, atol=1e-7)
    f = (rgb / 65535.0).astype(np.float32)  # float RGB: PIL cannot open it at all
    tifffile.imwrite(tmp_path / "rgbf.tif", f, photometric="rgb")
    np.testing.assert_array_equal(_read_image(tmp_path / "rgbf.tif"), f)
    tifffile.imwrite(tmp_path / "rgbf2.tif", 2 * f, photometric="rgb")
    with pytest.raises(ValueError, match=r"rgbf2\.tif.*outside \[0, 1\]"):
        _read_image(tmp_path / "rgbf2.tif")


def test_cmyk_and_corrupt_refused(tmp_path):
    Image.new("CMYK", (4, 4)).save(tmp_path / "c.jpg")
    with pytest.raises(ValueError, match=r"c\.jpg.*CMYK"):
        _read_image(tmp_path / "c.jpg")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"junk\.png"):
        _read_image(tmp_path / "junk.png")


def test_resize_keeps_16bit_precision(tmp_path):
    ramp = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "r.png")
    x = _read_image(tmp_path / "r.png", size=(8, 8))
    assert x.shape == (8, 8, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and len(np.unique(x)) > 32
