"""How the app decodes images (gallery files and query uploads): shrunk as decoded, capped, upright, 8-bit."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageDraw, ImageFile, ImageOps

from app import gallery


def test_a_large_png_comes_back_at_most_max_side_with_its_proportions(tmp_path):
    path = tmp_path / "poster.png"
    image = Image.new("RGBA", (6000, 3000), (200, 120, 40, 255))
    ImageDraw.Draw(image).rectangle((0, 0, 2999, 2999), fill=(20, 60, 200, 255))  # left half blue
    image.save(path)
    out = gallery.open_image(path)
    assert out.size == (gallery.MAX_SIDE, gallery.MAX_SIDE // 2) and out.mode == "RGB"
    assert out.getpixel((10, 10)) == (20, 60, 200) and out.getpixel((1000, 500)) == (200, 120, 40)


def test_a_large_jpeg_is_judged_by_the_pixels_it_decodes_to(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("L", (9000, 6000), 90).save(path)  # 54 MP, over the cap, but JPEG decodes at 1/8 scale
    out = gallery.open_image(path)
    assert out.size == (gallery.MAX_SIDE, 683)


def test_too_large_an_image_is_refused_before_decoding_with_its_size(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (8000, 7000)).save(path)  # 56 MP in a few kB
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(ValueError, match=r"bomb.png is too large to decode safely \(8000 x 7000 pixels; "
                                         r"at most 50 megapixels\)\. Fix: "):
        gallery.open_image(path)
    assert not decoded


def _oriented(path, orientation: int):
    """A 60 x 40 image, left third black, saved with EXIF ``orientation`` (TIFF as a tag of its own)."""
    image = Image.new("RGB", (60, 40), (250, 250, 250))
    image.paste((0, 0, 0), (0, 0, 20, 40))
    image.paste((250, 0, 0), (20, 0, 40, 20))  # and a red square, so every flip differs
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    if path.suffix == ".tif":
        image.save(path, tiffinfo={ExifTags.Base.Orientation: orientation})
    else:
        image.save(path, exif=exif.tobytes(), **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def test_an_exif_rotated_photo_comes_back_upright(tmp_path):
    upright = gallery.open_image(_oriented(tmp_path / "phone.jpg", 6))  # "rotate 90 degrees clockwise to view"
    assert upright.size == (40, 60)
    top, bottom = upright.getpixel((20, 5)), upright.getpixel((20, 55))
    assert max(top) < 40 and min(bottom) > 200  # the black left third is now on top


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])  # PIL turns TIFFs as it loads them: not twice
@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_exif_orientation_is_applied_as_pillow_does(tmp_path, suffix, orientation):
    path = _oriented(tmp_path / f"o{suffix}", orientation)
    expected = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    out = gallery.open_image(path)
    assert out.size == expected.size and out.tobytes() == expected.tobytes()


def test_an_exif_rotated_large_photo_is_shrunk_and_upright(tmp_path):
    path = tmp_path / "big.png"
    image = Image.new("L", (4000, 2000), 255)
    image.paste(0, (0, 0, 2000, 2000))  # left half black
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8  # "rotate 90 degrees counter-clockwise to view": left goes to the bottom
    image.save(path, exif=exif.tobytes())
    out = gallery.open_image(path)
    assert out.size == (512, 1024)
    assert out.getpixel((256, 10)) == (255, 255, 255) and out.getpixel((256, 1000)) == (0, 0, 0)


@pytest.mark.parametrize("size", [(40, 30), (3000, 2000)])  # kept as is, and shrunk
def test_a_16_bit_png_keeps_its_grey_levels(tmp_path, size):
    path = tmp_path / "scan.png"
    levels = np.full(size[::-1], 32896, np.uint16)  # 128 * 257: mid-grey
    levels[:, : size[0] // 2] = 65535
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode == "I;16"
    out = gallery.open_image(path)
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((out.width - 2, 1)) == (128, 128, 128)


@pytest.mark.parametrize("values, expected", [
    ((0.5, 0.0), (128, 0)),  # within [0, 1]: that is the scale
    ((1000.0, 500.0), (255, 0)),  # any other range: the image's own
])
def test_a_float_tiff_is_scaled_to_8_bit(tmp_path, values, expected):
    path = tmp_path / "depth.tif"
    pixels = np.full((30, 40), values[0], np.float32)
    pixels[:, 20:] = values[1]
    pixels[0, 39] = np.nan  # no-data pixels become black, and do not spoil the range
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode == "F"
    out = gallery.open_image(path)
    assert out.getpixel((5, 15))[0] == expected[0] and out.getpixel((35, 15))[0] == expected[1]
    assert out.getpixel((39, 0)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["1", "P", "LA", "RGBA", "CMYK", "I"])
def test_other_modes_shrink_like_their_rgb_version(tmp_path, mode):
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I") else "x.png")
    rgb = Image.new("RGB", (2200, 1100), (255, 255, 255))
    rgb.paste((0, 0, 0), (0, 0, 1100, 1100))
    image = rgb.convert(mode) if mode != "I" else rgb.convert("L").point(lambda v: v * 257, "I")
    image.save(path)
    out = gallery.open_image(path)
    assert out.size == (1024, 512) and out.getpixel((10, 10)) == (0, 0, 0)
    assert min(out.getpixel((1000, 500))) > 240


def test_the_pixel_budget_bounds_what_threads_decode_at_once(tmp_path, monkeypatch):
    paths = []
    for i, size in enumerate([(2000, 1500), (1000, 1000), (2500, 2000), (1500, 1500), (2000, 1000), (3000, 1000)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", size, 10 * i).save(paths[-1])
    limit = 6_000_000
    monkeypatch.setattr(gallery, "DECODE_BUDGET", gallery.PixelBudget(limit))
    decoding, peak, lock = [0], [0], threading.Lock()
    load = ImageFile.ImageFile.load

    def counted_load(self):  # slow decoding, so that threads overlap unless the budget stops them
        if not self.tile:  # decoded already: PIL calls load() again before most operations
            return load(self)
        with lock:
            decoding[0] += self.width * self.height
            peak[0] = max(peak[0], decoding[0])
        time.sleep(0.05)
        try:
            return load(self)
        finally:
            with lock:
                decoding[0] -= self.width * self.height

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted_load)
    results = [None] * len(paths)

    def work(i):
        results[i] = gallery.open_image(paths[i]).getpixel((0, 0))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(paths)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [(10 * i,) * 3 for i in range(len(paths))]
    assert 0 < peak[0] <= limit and decoding[0] == 0 and gallery.DECODE_BUDGET.used == 0


def test_an_image_over_pillows_own_limit_gets_the_same_clear_message(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (20_000, 10_000)).save(path)  # 200 MP: PIL refuses it as it reads the header
    with pytest.raises(ValueError, match=r"huge.png is too large to decode safely \(over 179 megapixels"):
        gallery.open_image(path)
