"""Tests for captioning/images.py, the one image loader used by the CLI, the trainer and the app.

They protect what a captioner silently suffers from when it breaks: photos shown sideways (EXIF
orientation), transparent images turned black instead of white, CMYK and 16-bit images coming out with
wrong colours or solid white, animations, decompression bombs decoded anyway, truncated or fake files
returned as half-grey pictures instead of clear errors, and unstable cache keys; phone photos (HEIC, AVIF)
refused or rotated twice; files in a folder skipped without a word; and 50-megapixel photos decoded whole
when a model reads 224 pixels. Every image is made here with Pillow / pillow-heif (or, for a 16-bit RGB PNG,
written byte by byte); nothing is downloaded.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin, features

from captioning.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageLoadError,
    SkippedFile,
    find_images,
    image_content_hash,
    is_image_file,
    load_image,
    prepare_for_display,
    scan_folder,
    skip_reason,
)
from captioning.preprocessing import input_side, make_image_processor, needed_side

AVIF = features.check("avif")
needs_avif = pytest.mark.skipif(not AVIF, reason="this Pillow was built without AVIF")

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(int)  # (H, W, 3)


def assert_close(actual, expected, tolerance: int = 0) -> None:
    diff = np.abs(np.asarray(actual, dtype=int) - np.asarray(expected, dtype=int))
    assert diff.max() <= tolerance, f"{actual} != {expected} (tolerance {tolerance})"


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def noise_jpeg_bytes(width: int = 64, height: int = 48) -> bytes:
    """A JPEG of random colours: every 8x8 block has data, so cutting the file loses real image data."""
    array = np.random.RandomState(0).randint(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# Extensions and finding files
# --------------------------------------------------------------------------------------------------


def test_image_extensions_are_lower_case_with_dot_and_all_open_in_pillow():
    assert {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    registered = Image.registered_extensions()
    for extension in IMAGE_EXTENSIONS:
        assert extension.startswith(".") and extension == extension.lower()
        assert extension in registered, f"{extension} listed but Pillow cannot open it"
    assert MAX_PIXELS == 64_000_000


@pytest.mark.parametrize(
    "name, expected",
    [
        ("photo.jpg", True),
        ("PHOTO.JPG", True),
        ("scan.TiFf", True),
        ("dir/sub/pic.webp", True),
        ("notes.txt", False),
        ("jpg", False),
        (".DS_Store", False),
        ("._photo.jpg", False),  # macOS resource fork, not an image
        (".hidden.png", False),
        ("archive.jpg.zip", False),
    ],
)
def test_is_image_file_by_extension_case_insensitive_skipping_hidden(name, expected):
    assert is_image_file(name) is expected
    assert is_image_file(Path(name)) is expected


def test_find_images_sorted_upper_case_extension_hidden_and_recursive(tmp_path):
    tiny = Image.new("RGB", (2, 2), RED)
    save(tiny, tmp_path / "b.JPG", format="JPEG")
    save(tiny, tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "._b.JPG").write_bytes(b"\0\5\x16\7")
    (tmp_path / "folder.jpg").mkdir()  # a folder with an image-like name is not an image
    (tmp_path / "sub").mkdir()
    save(tiny, tmp_path / "sub" / "c.jpeg", format="JPEG")
    (tmp_path / ".cache").mkdir()
    save(tiny, tmp_path / ".cache" / "d.png")

    assert find_images(tmp_path) == [tmp_path / "a.png", tmp_path / "b.JPG"]
    assert find_images(str(tmp_path), recursive=True) == [
        tmp_path / "a.png",
        tmp_path / "b.JPG",
        tmp_path / "sub" / "c.jpeg",
    ]
    assert load_image(find_images(tmp_path)[1]).size == (2, 2)


def test_phone_formats_are_listed_and_open_in_pillow():
    assert {".heic", ".heif", ".hif"} <= IMAGE_EXTENSIONS
    assert (".avif" in IMAGE_EXTENSIONS) is AVIF
    assert is_image_file("IMG_0001.HEIC") and is_image_file("DSCF0001.HIF")


@pytest.mark.parametrize(
    "name, reason",
    [
        ("drawing.svg", "SVG is a vector format; export it as PNG or JPEG"),
        ("notes.txt", "not an image file (.txt)"),
        ("README", "not an image file (no extension)"),
        ("IMG_0001.CR2", "camera RAW file (.cr2)"),
        ("IMG_0001.MOV", "video file (.mov)"),
        ("scan.pdf", "PDF is a document"),
        ("old.ppm", "PPM images are not loaded"),
        ("icon.ico", "ICO images are not loaded"),
        (".DS_Store", "hidden file"),
    ],
)
def test_skip_reason_says_what_the_file_is_and_what_to_do(name, reason):
    assert reason in skip_reason(name)
    assert not is_image_file(name)


def test_skip_reason_is_none_exactly_for_image_files():
    for name in ["a.jpg", "b.PNG", "c.heic", "d.webp", "e.tiff"]:
        assert skip_reason(name) is None and is_image_file(name)


def test_scan_folder_names_every_file_it_skips_except_hidden_files_and_sidecars(tmp_path):
    tiny = Image.new("RGB", (2, 2), RED)
    save(tiny, tmp_path / "a.png")
    save(tiny, tmp_path / "b.heic", format="HEIF")
    (tmp_path / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "IMG_0002.MOV").write_bytes(b"\0" * 8)
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: quiet
    (tmp_path / "a.png.xmp").write_text("<x:xmpmeta/>")  # sidecars: quiet
    (tmp_path / "IMG_0002.AAE").write_text("<plist/>")
    (tmp_path / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / "folder.jpg").mkdir()  # folders are never listed
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("only seen when recursive")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")

    scan = scan_folder(tmp_path)
    assert scan.images == [tmp_path / "a.png", tmp_path / "b.heic"] == find_images(tmp_path)
    reasons = {s.path.name: s.reason for s in scan.skipped}
    assert sorted(reasons) == ["IMG_0002.MOV", "drawing.svg", "gone.jpg", "notes.txt"]  # sorted by path
    assert reasons["drawing.svg"] == "SVG is a vector format; export it as PNG or JPEG"
    assert reasons["notes.txt"] == "not an image file (.txt)"
    assert "broken link" in reasons["gone.jpg"]
    assert all(isinstance(s, SkippedFile) for s in scan.skipped)

    deep = scan_folder(tmp_path, recursive=True)
    assert tmp_path / "sub" / "deep.txt" in [s.path for s in deep.skipped]


def test_find_images_missing_folder_or_file_raises_with_the_path(tmp_path):
    with pytest.raises(ImageLoadError, match="does not exist") as missing:
        find_images(tmp_path / "nope")
    assert "nope" in str(missing.value)
    file = save(Image.new("RGB", (2, 2)), tmp_path / "x.png")
    with pytest.raises(ImageLoadError, match="not a folder") as not_dir:
        find_images(file)
    assert "x.png" in str(not_dir.value)


# --------------------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------------------

# How a viewer turns the stored pixels S (H, W, 3) into the upright picture, per the EXIF spec, written
# with numpy so the test does not depend on Pillow's own table.
DISPLAY = {
    1: lambda s: s,
    2: lambda s: s[:, ::-1],  # mirrored left-right
    3: lambda s: s[::-1, ::-1],  # rotated 180
    4: lambda s: s[::-1, :],  # mirrored top-bottom
    5: lambda s: s.transpose(1, 0, 2),  # mirrored and rotated: transpose
    6: lambda s: np.rot90(s, -1),  # rotate 90 clockwise to view
    7: lambda s: s[::-1, ::-1].transpose(1, 0, 2),  # transverse
    8: lambda s: np.rot90(s, 1),  # rotate 90 counter-clockwise to view
}
# What a camera stores for an upright picture U: the inverse of DISPLAY (6 and 8 swap, the rest undo themselves).
STORE = {**DISPLAY, 6: DISPLAY[8], 8: DISPLAY[6]}


def with_orientation(upright: np.ndarray, orientation: int) -> Image.Image:
    stored = Image.fromarray(np.ascontiguousarray(STORE[orientation](upright)))
    exif = Image.Exif()
    exif[0x0112] = orientation  # 0x0112 = Orientation
    stored.info["exif_bytes"] = exif.tobytes()
    return stored


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_exactly(tmp_path, orientation):
    # 3 wide x 2 high, all pixels different: any wrong flip, rotation or transpose changes the array.
    upright = np.array(
        [[RED, GREEN, BLUE], [WHITE, BLACK, (255, 255, 0)]],
        dtype=np.uint8,
    )  # (2, 3, 3)
    stored = with_orientation(upright, orientation)
    path = save(stored, tmp_path / f"o{orientation}.png", exif=stored.info["exif_bytes"])

    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (3, 2)
    np.testing.assert_array_equal(pixels(loaded), upright)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotation_in_a_jpeg_photo_and_loading_twice_does_not_rotate_again(tmp_path, orientation):
    # 64x32 upright picture in four solid blocks (JPEG-safe), stored rotated like a phone does.
    upright = np.zeros((32, 64, 3), dtype=np.uint8)
    upright[:16, :32], upright[:16, 32:], upright[16:, :32], upright[16:, 32:] = RED, GREEN, BLUE, WHITE
    stored = with_orientation(upright, orientation)
    assert stored.size == (32, 64)
    path = save(stored, tmp_path / "phone.jpg", format="JPEG", quality=95, exif=stored.info["exif_bytes"])

    loaded = load_image(path)
    assert loaded.size == (64, 32)
    for (x, y), colour in {(8, 8): RED, (56, 8): GREEN, (8, 24): BLUE, (56, 24): WHITE}.items():
        assert_close(loaded.getpixel((x, y)), colour, tolerance=12)
    again = load_image(loaded)
    assert again.size == (64, 32)
    np.testing.assert_array_equal(pixels(again), pixels(loaded))


def four_blocks(width: int = 64, height: int = 32) -> np.ndarray:
    """An upright picture in four solid blocks (lossy-codec-safe): red, green / blue, white."""
    upright = np.zeros((height, width, 3), dtype=np.uint8)
    half_h, half_w = height // 2, width // 2
    upright[:half_h, :half_w], upright[:half_h, half_w:] = RED, GREEN
    upright[half_h:, :half_w], upright[half_h:, half_w:] = BLUE, WHITE
    return upright


def assert_four_blocks(image: Image.Image, tolerance: int = 16) -> None:
    assert image.size == (64, 32)
    for (x, y), colour in {(8, 8): RED, (56, 8): GREEN, (8, 24): BLUE, (56, 24): WHITE}.items():
        assert_close(image.getpixel((x, y)), colour, tolerance=tolerance)


@pytest.mark.parametrize("suffix", [".heic", ".HEIF", ".hif"])
def test_heic_photo_loads(tmp_path, suffix):
    path = save(Image.fromarray(four_blocks()), tmp_path / f"IMG_0001{suffix}", format="HEIF", quality=95)
    loaded = load_image(path)
    assert type(loaded) is Image.Image and loaded.mode == "RGB" and loaded.info == {}
    assert_four_blocks(loaded)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_heic_rotation_is_applied_once(tmp_path, orientation):
    stored = with_orientation(four_blocks(), orientation)
    path = save(stored, tmp_path / "IMG_0002.HEIC", format="HEIF", quality=95, exif=stored.info["exif_bytes"])
    # pillow-heif writes the rotation into the container (irot) and libheif applies it when decoding,
    # resetting the EXIF tag to 1: the raw file already opens upright.
    with Image.open(path) as raw:
        assert raw.size == (64, 32) and raw.getexif().get(0x0112, 1) == 1
    loaded = load_image(path)
    assert_four_blocks(loaded)
    np.testing.assert_array_equal(pixels(load_image(loaded)), pixels(loaded))  # no second rotation


@needs_avif
@pytest.mark.parametrize("orientation", [6, 8])
def test_avif_photo_loads_upright(tmp_path, orientation):
    stored = with_orientation(four_blocks(), orientation)
    path = save(stored, tmp_path / "photo.avif", quality=95, exif=stored.info["exif_bytes"])
    with Image.open(path) as raw:  # Pillow's AVIF reader leaves the rotation to the EXIF step
        assert raw.format == "AVIF" and raw.size == (32, 64) and raw.getexif().get(0x0112) == orientation
    loaded = load_image(path)
    assert_four_blocks(loaded)
    np.testing.assert_array_equal(pixels(load_image(loaded)), pixels(loaded))


def test_heic_and_avif_from_bytes(tmp_path):
    for format_ in ["HEIF"] + ["AVIF"] * AVIF:
        buffer = io.BytesIO()
        Image.fromarray(four_blocks()).save(buffer, format=format_, quality=95)
        assert_four_blocks(load_image(buffer.getvalue(), name=f"upload.{format_.lower()}"))


# --------------------------------------------------------------------------------------------------
# Modes: transparency, CMYK, bit depths, palettes, colour spaces
# --------------------------------------------------------------------------------------------------


def test_rgba_transparency_is_composited_onto_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 0, 128), (0, 0, 255, 255)])  # invisible red, half black, blue
    loaded = load_image(save(rgba, tmp_path / "logo.png"))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == WHITE  # not black, and not the hidden red
    assert_close(loaded.getpixel((1, 0)), (127, 127, 127), tolerance=1)
    assert loaded.getpixel((2, 0)) == BLUE


def test_la_transparency_is_composited_onto_white(tmp_path):
    la = Image.new("LA", (3, 1))
    la.putdata([(0, 0), (0, 255), (200, 255)])
    loaded = load_image(save(la, tmp_path / "la.png"))
    assert [loaded.getpixel((x, 0)) for x in range(3)] == [WHITE, BLACK, (200, 200, 200)]


@pytest.mark.parametrize("extension", [".png", ".gif"])
def test_palette_with_transparent_index_is_composited_onto_white(tmp_path, extension):
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))  # index 0 black, index 1 red
    palette_image.putdata([0, 1])
    path = save(palette_image, tmp_path / f"p{extension}", transparency=0)
    assert Image.open(path).mode == "P"
    loaded = load_image(path)
    assert loaded.getpixel((0, 0)) == WHITE  # transparent black -> white background
    assert loaded.getpixel((1, 0)) == RED


def test_pa_image_source_is_composited_onto_white():
    pa = Image.new("PA", (2, 1))
    pa.putpalette([0, 255, 0] * 256)
    pa.putdata([(0, 0), (0, 255)])
    loaded = load_image(pa)
    assert [loaded.getpixel((x, 0)) for x in range(2)] == [WHITE, GREEN]


def test_cmyk_jpeg_gives_correct_rgb(tmp_path):
    cmyk = Image.new("CMYK", (32, 16))
    cmyk.paste((255, 0, 0, 0), (0, 0, 16, 16))  # pure cyan
    cmyk.paste((0, 0, 0, 255), (16, 0, 32, 16))  # pure black ink
    path = save(cmyk, tmp_path / "print.jpg", format="JPEG", quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"  # Pillow writes Adobe (inverted) CMYK; the loader must undo it
    loaded = load_image(path)
    assert_close(loaded.getpixel((8, 8)), (0, 255, 255), tolerance=6)
    assert_close(loaded.getpixel((24, 8)), BLACK, tolerance=6)


def test_16_bit_greyscale_png_is_scaled_not_white(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # really a high-depth image, not already 8-bit
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0)) for x in range(4)] == [(0,) * 3, (1,) * 3, (128,) * 3, (255,) * 3]

    # A full gradient: mid value ~128 and max 255, i.e. not the all-white a naive convert gives.
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))  # (4, 256)
    gradient_path = tmp_path / "gradient.png"
    Image.fromarray(gradient).save(gradient_path)
    grey = pixels(load_image(gradient_path))[..., 0]
    assert grey.max() == 255 and grey.min() == 0
    assert abs(int(grey[0, 128]) - 128) <= 1
    assert (grey == 255).mean() < 0.05


@pytest.mark.parametrize(
    "mode, raw, expected",
    [
        ("I;16", np.array([[0, 32768, 65535]], dtype="<u2").tobytes(), [0, 128, 255]),
        ("I;16B", np.array([[0, 32768, 65535]], dtype=">u2").tobytes(), [0, 128, 255]),
        ("I", np.array([[0, 32768, 65535]], dtype="<i4").tobytes(), [0, 128, 255]),
        ("I", np.array([[-100, 0, 100]], dtype="<i4").tobytes(), [0, 128, 255]),  # outside 16 bits: stretched
        ("F", np.array([[0.0, 0.5, 1.0]], dtype="<f4").tobytes(), [0, 128, 255]),
        ("F", np.array([[0.0, 100.0, 255.0]], dtype="<f4").tobytes(), [0, 100, 255]),
        ("F", np.array([[np.nan, -1.0, 3.0]], dtype="<f4").tobytes(), [0, 0, 255]),
    ],
)
def test_high_depth_modes_are_scaled_to_8_bits(mode, raw, expected):
    image = Image.frombytes(mode, (3, 1), raw)
    loaded = load_image(image)
    assert loaded.mode == "RGB"
    assert [loaded.getpixel((x, 0)) for x in range(3)] == [(v, v, v) for v in expected]


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    """A minimal PNG written by hand, for the 16-bit RGB files Pillow cannot save."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\0" + row for row in rows)  # filter type 0 on every row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_16_bit_rgb_png_gives_correct_8_bit_colours():
    row = struct.pack(">6H", 65535, 0, 32768, 0, 65535, 65535)  # two pixels: (1, 0, .5) and (0, 1, 1)
    loaded = load_image(png_bytes(2, 1, 16, 2, [row]), name="deep.png")
    assert loaded.getpixel((0, 0)) == (255, 0, 128)
    assert loaded.getpixel((1, 0)) == (0, 255, 255)


def test_1_bit_image_becomes_black_and_white_rgb(tmp_path):
    bits = Image.new("1", (2, 1))
    bits.putdata([0, 255])
    for extension in (".png", ".bmp"):
        loaded = load_image(save(bits, tmp_path / f"bits{extension}"))
        assert loaded.mode == "RGB"
        assert [loaded.getpixel((x, 0)) for x in range(2)] == [BLACK, WHITE]


@pytest.mark.parametrize(
    "mode, value, expected, tolerance",
    [
        ("L", 77, (77, 77, 77), 0),
        ("HSV", (0, 0, 255), WHITE, 0),
        ("HSV", (0, 255, 255), RED, 0),
        ("YCbCr", (76, 85, 255), RED, 3),
        ("LAB", (255, 128, 128), WHITE, 2),
        ("CMYK", (0, 255, 255, 0), RED, 0),
    ],
)
def test_other_modes_convert_to_correct_rgb(mode, value, expected, tolerance):
    loaded = load_image(Image.new(mode, (2, 2), value))
    assert loaded.mode == "RGB"
    assert_close(loaded.getpixel((1, 1)), expected, tolerance)


def test_plain_palette_image_keeps_its_colours(tmp_path):
    palette_image = Image.new("RGB", (2, 1))
    palette_image.putdata([RED, BLUE])
    path = save(palette_image.convert("P", palette=Image.Palette.ADAPTIVE, colors=2), tmp_path / "pal.png")
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0)) for x in range(2)] == [RED, BLUE]


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), RED), Image.new("RGB", (4, 4), BLUE)]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert set(loaded.getdata()) == {RED}


def test_multi_picture_jpeg_from_a_phone_gives_its_main_picture(tmp_path):
    path = tmp_path / "IMG_0002.JPG"
    Image.new("RGB", (16, 16), RED).save(path, "MPO", save_all=True, append_images=[Image.new("RGB", (16, 16), BLUE)])
    with Image.open(path) as raw:
        assert raw.format == "MPO" and raw.n_frames == 2
    assert_close(load_image(path).getpixel((8, 8)), RED, tolerance=3)

@pytest.mark.parametrize(
    "filename, save_kwargs",
    [
        ("a.jpeg", {"format": "JPEG", "quality": 100}),
        ("a.jfif", {"format": "JPEG", "quality": 100}),
        ("a.bmp", {}),
        ("a.webp", {"lossless": True}),
        ("a.tif", {}),
        ("a.TIFF", {"format": "TIFF", "compression": "tiff_deflate"}),
    ],
)
def test_each_supported_format_loads(tmp_path, filename, save_kwargs):
    if Path(filename).suffix.lower() not in IMAGE_EXTENSIONS:
        pytest.skip(f"{filename}: extension not supported by this Pillow")
    path = save(Image.new("RGB", (16, 8), (10, 120, 230)), tmp_path / filename, **save_kwargs)
    loaded = load_image(path)
    assert loaded.size == (16, 8)
    assert_close(loaded.getpixel((4, 4)), (10, 120, 230), tolerance=3)


# --------------------------------------------------------------------------------------------------
# What comes back: type, independence from the file, idempotence
# --------------------------------------------------------------------------------------------------


def test_result_is_a_plain_loaded_rgb_image_and_the_file_is_closed(tmp_path):
    path = save(Image.new("RGBA", (5, 3), (0, 128, 0, 255)), tmp_path / "g.png")
    loaded = load_image(str(path))
    assert type(loaded) is Image.Image  # not a lazy ImageFile still bound to the file
    assert loaded.mode == "RGB" and loaded.size == (5, 3)
    assert loaded.info == {}  # no metadata left to be re-applied (EXIF orientation) on a second load
    if os.path.isdir("/proc/self/fd"):
        open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
        assert str(path.resolve()) not in open_files
    path.unlink()  # the pixels do not depend on the file any more
    assert loaded.getpixel((4, 2)) == (0, 128, 0)


def test_a_pil_image_source_is_normalised_and_left_unchanged():
    original = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    loaded = load_image(original)
    assert loaded is not original
    assert original.mode == "RGBA" and original.getpixel((0, 0)) == (0, 0, 0, 0)
    assert loaded.getpixel((0, 0)) == WHITE
    rgb = Image.new("RGB", (2, 2), RED)
    assert load_image(rgb) is not rgb


def test_bytes_and_file_object_sources_load_and_position_is_restored(tmp_path):
    data = noise_jpeg_bytes()
    from_path = pixels(load_image(save_bytes(tmp_path / "n.jpg", data)))
    np.testing.assert_array_equal(pixels(load_image(data)), from_path)
    np.testing.assert_array_equal(pixels(load_image(bytearray(data))), from_path)
    stream = io.BytesIO(data)
    np.testing.assert_array_equal(pixels(load_image(stream)), from_path)
    assert stream.tell() == 0
    with open(tmp_path / "n.jpg", "rb") as file:
        np.testing.assert_array_equal(pixels(load_image(file)), from_path)
        assert not file.closed  # the caller's file object is the caller's to close


def save_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------------
# Refusals: bombs, empty, truncated, fake, missing, unsupported
# --------------------------------------------------------------------------------------------------


def test_image_over_max_pixels_is_refused_with_size_and_limit(tmp_path):
    path = save(Image.new("RGB", (200, 100)), tmp_path / "big.png")
    with pytest.raises(ImageLoadError) as refused:
        load_image(path, max_pixels=10_000)
    message = str(refused.value)
    assert "big.png" in message and "200x100" in message and "20,000" in message and "10,000" in message
    assert "max_pixels" in message
    assert load_image(path, max_pixels=20_000).size == (200, 100)  # exactly at the limit is fine


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    # A truncated file would fail while decoding; refusing it for its size proves nothing was decoded.
    data = noise_jpeg_bytes(64, 48)
    path = save_bytes(tmp_path / "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="max_pixels"):
        load_image(path, max_pixels=1000)


@pytest.mark.parametrize("pillow_limit", [2000, 4000])  # 3072 px: past Pillow's error (2x) and warning (1x) lines
def test_pillows_own_bomb_guard_becomes_image_load_error(tmp_path, monkeypatch, pillow_limit):
    path = save(Image.new("RGB", (64, 48)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit // 2)
    filters_before = list(warnings.filters)
    with pytest.raises(ImageLoadError, match="MAX_IMAGE_PIXELS") as refused:
        load_image(path, max_pixels=10**9)
    assert "bomb.png" in str(refused.value)
    assert warnings.filters == filters_before  # the warning was escalated only inside the call


def test_pillow_global_switches_are_left_alone(tmp_path):
    load_image(save(Image.new("RGB", (4, 4)), tmp_path / "x.png"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0


@pytest.mark.parametrize("source_kind", ["path", "bytes"])
def test_empty_file_is_refused(tmp_path, source_kind):
    path = save_bytes(tmp_path / "empty.jpg", b"")
    source = path if source_kind == "path" else b""
    with pytest.raises(ImageLoadError, match="empty") as refused:
        load_image(source, name=None if source_kind == "path" else "upload.jpg")
    assert ("empty.jpg" if source_kind == "path" else "upload.jpg") in str(refused.value)


@pytest.mark.parametrize("cut", ["half", "end_marker"])
def test_truncated_jpeg_raises_instead_of_returning_grey(tmp_path, cut):
    data = noise_jpeg_bytes()
    kept = data[: len(data) // 2] if cut == "half" else data[:-2]
    path = save_bytes(tmp_path / "partial.jpg", kept)
    with pytest.raises(ImageLoadError, match="truncated") as refused:
        load_image(path)
    assert "partial.jpg" in str(refused.value)


def test_truncated_png_raises(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(1).randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    with pytest.raises(ImageLoadError, match="cut.png"):
        load_image(buffer.getvalue()[:-200], name="cut.png")


def test_text_file_named_jpg_is_refused_as_not_an_image(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(ImageLoadError, match="not an image") as refused:
        load_image(path)
    assert "fake.jpg" in str(refused.value) and "<html>" in str(refused.value)


def test_missing_file_and_directory_are_refused_with_the_path(tmp_path):
    with pytest.raises(ImageLoadError, match="does not exist") as missing:
        load_image(tmp_path / "ghost.png")
    assert "ghost.png" in str(missing.value)
    with pytest.raises(ImageLoadError, match="folder") as folder:
        load_image(tmp_path)
    assert "find_images" in str(folder.value)


def test_unsupported_formats_are_named(tmp_path):
    path = save(Image.new("RGB", (4, 4)), tmp_path / "pic.jpg", format="PPM")
    with pytest.raises(ImageLoadError, match="PPM format, which is not supported") as refused:
        load_image(path)
    assert "pic.jpg" in str(refused.value)
    heic_header = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)
    with pytest.raises(ImageLoadError, match="HEIC"):
        load_image(heic_header, name="IMG_0001.HEIC")


def test_svg_and_broken_phone_photos_are_explained(tmp_path):
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>'
    with pytest.raises(ImageLoadError, match="SVG is a vector format") as refused:
        load_image(svg, name="logo.png")
    assert "logo.png" in str(refused.value)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(buffer, format="HEIF")
    with pytest.raises(ImageLoadError, match="HEIC/HEIF photo that could not be read") as broken:
        load_image(buffer.getvalue()[:200], name="IMG_0003.HEIC")
    assert "IMG_0003.HEIC" in str(broken.value)


def test_wrong_source_type_and_text_mode_files_are_explained(tmp_path):
    with pytest.raises(TypeError, match="got a int"):
        load_image(42)
    path = tmp_path / "t.png"
    path.write_text("x")
    with open(path) as text_file, pytest.raises(ImageLoadError, match="'rb'"):
        load_image(text_file)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(b"x", max_pixels=0)


# --------------------------------------------------------------------------------------------------
# Decoding at the size the models need (min_side)
# --------------------------------------------------------------------------------------------------


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus mild noise, like a photo: JPEG keeps real detail, and resampling is comparable."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([255 * x / width, 255 * y / height, 127 + 100 * np.sin(x / 97.0 + y / 53.0)], axis=-1)
    noise = np.random.default_rng(seed).integers(-12, 13, (height, width, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)  # (H, W, 3)


@pytest.fixture(scope="module")
def big_rotated_jpeg(tmp_path_factory) -> Path:
    """A 4000x3000 (12 MP) upright photo, stored as a phone does: 3000x4000 pixels with EXIF orientation 6."""
    stored = with_orientation(photo_like(4000, 3000), 6)
    path = tmp_path_factory.mktemp("big") / "IMG_4000.jpg"
    return save(stored, path, format="JPEG", quality=90, exif=stored.info["exif_bytes"])


def test_min_side_decodes_a_big_jpeg_reduced_upright_and_close_to_the_full_decode(big_rotated_jpeg, monkeypatch):
    decoded_sizes = []
    original_load = JpegImagePlugin.JpegImageFile.load

    def spy_load(self):  # the size libjpeg really decodes at (after any draft)
        decoded_sizes.append(self.size)
        return original_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy_load)
    small = load_image(big_rotated_jpeg, min_side=256)
    assert decoded_sizes[0] == (375, 500)  # 3000x4000 stored, decoded at 1/8 scale: 64x fewer pixels
    assert small.size == (341, 256) and small.mode == "RGB"  # upright (landscape), shorter side 256

    decoded_sizes.clear()
    full = load_image(big_rotated_jpeg)
    assert decoded_sizes[0] == (3000, 4000) and full.size == (4000, 3000)
    reference = full.resize(small.size, Image.Resampling.BICUBIC)
    difference = np.abs(pixels(small) - pixels(reference))  # (256, 341, 3)
    assert difference.mean() < 2.0, difference.mean()
    # Orientation: a mirror or a 180-degree turn would give large differences.
    assert np.abs(pixels(small) - pixels(reference.transpose(Image.Transpose.ROTATE_180))).mean() > 20


def test_min_side_picks_the_largest_draft_scale_that_stays_big_enough(big_rotated_jpeg, monkeypatch):
    decoded_sizes = []
    original_load = JpegImagePlugin.JpegImageFile.load
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load",
                        lambda self: decoded_sizes.append(self.size) or original_load(self))
    for min_side, decoded in [(1000, (1500, 2000)), (1500, (1500, 2000)), (1501, (3000, 4000))]:
        decoded_sizes.clear()
        loaded = load_image(big_rotated_jpeg, min_side=min_side)
        assert set(decoded_sizes) == {decoded}  # load() runs more than once; the first call decodes
        assert min(loaded.size) == min_side and loaded.width > loaded.height


def test_min_side_of_other_formats_equals_resizing_the_full_image(tmp_path):
    path = save(Image.fromarray(photo_like(300, 200)), tmp_path / "wide.png")
    full = load_image(path)
    small = load_image(path, min_side=50)
    assert small.size == (75, 50)
    np.testing.assert_array_equal(pixels(small), pixels(full.resize((75, 50), Image.Resampling.BICUBIC)))
    tall = load_image(full.transpose(Image.Transpose.ROTATE_90), min_side=50)  # a PIL image source
    assert tall.size == (50, 75)


def test_min_side_gives_a_model_the_same_pixels_as_the_full_image(tmp_path):
    # The CLIP processor's own shortest-edge resize of the reduced image is a no-op, so a PNG reaches the
    # model exactly as from the full image; a JPEG (decoded reduced) differs by resampling noise only.
    processor = make_image_processor("clip", 32)
    side = needed_side([processor])
    array = photo_like(333, 250)
    for name, tolerance in [("p.png", 0.0), ("p.jpg", 0.05)]:
        path = save(Image.fromarray(array), tmp_path / name, quality=95)
        full = processor(images=[load_image(path)], return_tensors="np")["pixel_values"]
        reduced = processor(images=[load_image(path, min_side=side)], return_tensors="np")["pixel_values"]
        assert full.shape == reduced.shape == (1, 3, 32, 32)
        assert np.abs(full - reduced).mean() <= tolerance, (name, np.abs(full - reduced).mean())


def test_min_side_never_enlarges_and_keeps_the_checks(tmp_path):
    path = save(Image.fromarray(photo_like(40, 30)), tmp_path / "small.jpg")
    assert load_image(path, min_side=256).size == (40, 30)
    assert load_image(path, min_side=30).size == (40, 30)
    with pytest.raises(ImageLoadError, match="max_pixels"):  # the limit is on the full size in the header
        load_image(path, max_pixels=1000, min_side=8)
    data = noise_jpeg_bytes()
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[: len(data) // 2], name="cut.jpg", min_side=8)
    for bad in [0, -1, 2.5, True, "256"]:
        with pytest.raises(ValueError, match="min_side"):
            load_image(path, min_side=bad)


@pytest.mark.parametrize("kind", ["cmyk", "mpo", "grey"])
def test_min_side_of_other_jpeg_kinds_keeps_their_colours(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    if kind == "cmyk":
        Image.new("CMYK", (400, 200), (255, 0, 0, 0)).save(path, format="JPEG", quality=95)  # cyan
        colour = (0, 255, 255)
    elif kind == "mpo":
        Image.new("RGB", (400, 200), RED).save(path, "MPO", save_all=True,
                                                append_images=[Image.new("RGB", (400, 200), BLUE)])
        colour = RED
    else:
        Image.new("L", (400, 200), 90).save(path, format="JPEG", quality=95)
        colour = (90, 90, 90)
    loaded = load_image(path, min_side=40)
    assert loaded.size == (80, 40) and loaded.mode == "RGB"
    assert_close(loaded.getpixel((40, 20)), colour, tolerance=6)


def test_min_side_of_a_heic_photo(tmp_path):
    stored = with_orientation(photo_like(320, 240), 6)
    path = save(stored, tmp_path / "IMG_0004.HEIC", format="HEIF", quality=90, exif=stored.info["exif_bytes"])
    full = load_image(path)
    small = load_image(path, min_side=60)
    assert full.size == (320, 240) and small.size == (80, 60)
    assert np.abs(pixels(small) - pixels(full.resize((80, 60), Image.Resampling.BICUBIC))).mean() < 1


def test_input_side_reads_each_kind_of_processor():
    assert input_side(make_image_processor("clip", 48)) == 48  # shortest edge, then crop
    assert input_side(make_image_processor("vit", 224)) == 224  # squashed to 224 x 224
    plain = {"size": {"height": 384, "width": 512}, "do_resize": True}
    assert input_side(type("P", (), plain)()) == 512  # the shorter side must cover the larger box side
    assert input_side(type("P", (), {"size": {"shortest_edge": 224}, "do_resize": False})()) is None
    assert input_side(type("P", (), {"size": {}})()) is None


def test_needed_side_takes_the_largest_and_none_wins():
    clip48, vit64 = make_image_processor("clip", 48), make_image_processor("vit", 64)
    model = type("Model", (), {"image_processor": clip48})()  # a ZooModel-like object
    assert needed_side([model, vit64]) == 64
    assert needed_side([model], display_side=512) == 512
    full = type("P", (), {"size": {"shortest_edge": 224}, "do_resize": False})()
    assert needed_side([model, full], display_side=512) is None
    with pytest.raises(ValueError, match="no models"):
        needed_side([])


# --------------------------------------------------------------------------------------------------
# Content hash and display copies
# --------------------------------------------------------------------------------------------------


def test_content_hash_is_sha256_of_bytes_the_same_for_every_source_kind(tmp_path):
    data = noise_jpeg_bytes()
    path = save_bytes(tmp_path / "h.jpg", data)
    key = image_content_hash(path)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == image_content_hash(str(path)) == image_content_hash(data) == image_content_hash(bytearray(data))
    stream = io.BytesIO(data)
    assert image_content_hash(stream) == key and stream.tell() == 0
    assert image_content_hash(save_bytes(tmp_path / "copy.jpg", data)) == key  # name does not matter
    assert image_content_hash(data[:-1] + b"\0") != key
    assert image_content_hash(path) == key  # stable across calls


def test_content_hash_of_pil_images_uses_pixels_and_size():
    red = Image.new("RGB", (2, 3), RED)
    assert image_content_hash(red) == image_content_hash(Image.new("RGB", (2, 3), RED))
    assert image_content_hash(red) == image_content_hash(load_image(red))
    assert image_content_hash(red) != image_content_hash(Image.new("RGB", (3, 2), RED))  # same bytes, other shape
    assert image_content_hash(red) != image_content_hash(Image.new("RGB", (2, 3), BLUE))


def test_content_hash_errors_name_the_path(tmp_path):
    with pytest.raises(ImageLoadError, match="gone.jpg"):
        image_content_hash(tmp_path / "gone.jpg")
    with pytest.raises(ImageLoadError, match="folder"):
        image_content_hash(tmp_path)


def test_prepare_for_display_downscales_a_copy_keeping_aspect():
    wide = Image.new("RGB", (4000, 1000), RED)
    thumb = prepare_for_display(wide)
    assert thumb.size == (1024, 256) and thumb.mode == "RGB"
    assert wide.size == (4000, 1000)  # the original is untouched
    assert prepare_for_display(Image.new("RGB", (300, 900)), max_side=90).size == (30, 90)

    small = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    small_thumb = prepare_for_display(small)
    assert small_thumb is not small and small_thumb.size == (20, 10)  # never upscaled
    assert small_thumb.getpixel((0, 0)) == WHITE
    with pytest.raises(ValueError, match="max_side"):
        prepare_for_display(wide, max_side=0)

