"""The one image loader: every image the CLI, the trainer and the app see comes through `load_image`.

Photos people feed a captioner arrive in every shape Pillow can produce: rotated by an EXIF tag, with
transparency, in CMYK, as 16-bit greyscale, animated, truncated by a failed copy, or as a text file that
merely ends in `.jpg`. A captioner trained on one normalisation and served with another quietly gets worse,
so there is exactly one place that turns a user's file into pixels:

    load_image(source)          -> PIL.Image.Image, mode "RGB", fully decoded, upright, file closed
    find_images(folder)         -> sorted list of image paths (by extension, hidden files skipped)
    is_image_file(path)         -> does the name look like an image we load?
    image_content_hash(source)  -> sha256 hex, a stable key for ratings and embedding caches
    prepare_for_display(image)  -> downscaled RGB copy for UI thumbnails

What `load_image` guarantees, and why:
- EXIF orientation is applied (all 8 orientations), so a phone photo is captioned the way it is seen.
- Transparency is composited onto WHITE: a transparent logo on black is unreadable, and web images
  with alpha are meant to be seen on a light page.
- 16-bit and float greyscale are scaled to 8 bits (65535 -> 255); Pillow's plain `convert` clips them,
  which turns almost every 16-bit image solid white.
- Animated images (GIF, APNG, WebP) give their first frame.
- Pixel counts are checked from the header *before* decoding (decompression bombs), and truncated or
  corrupt files raise instead of silently coming back half grey. Pillow's global switches
  (`Image.MAX_IMAGE_PIXELS`, `ImageFile.LOAD_TRUNCATED_IMAGES`) are never changed.
- Every failure is an `ImageLoadError` that names the file, says what was wrong and what to do.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageLoadError",
    "ImageSource",
    "find_images",
    "image_content_hash",
    "is_image_file",
    "load_image",
    "prepare_for_display",
]

logger = logging.getLogger(__name__)


class ImageLoadError(ValueError):
    """An image could not be loaded. The message names the file, says what was wrong and what to do."""


# Lower-case, with the dot. `.jfif` is JPEG under another name; only listed if this Pillow knows it.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
    | ({".jfif"} if Image.registered_extensions().get(".jfif") == "JPEG" else set())
)

# Default decompression-bomb limit: 64 megapixels is above any phone or DSLR photo (a 60 MP camera
# gives ~9500x6300) yet far below what would exhaust memory once decoded (64e6 * 3 bytes = 192 MB RGB).
MAX_PIXELS: int = 64_000_000

# Pillow format ids we are willing to decode; they match IMAGE_EXTENSIONS. Restricting `Image.open` to
# these keeps exotic plugins (EPS runs Ghostscript, for one) away from untrusted uploads. "JPEG" also
# opens the multi-picture JPEGs (MPO) many phones write; "DIB" is the headerless variant of BMP.
_PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "DIB", "WEBP", "TIFF")
_SUPPORTED_FOR_HUMANS = "JPEG, PNG, GIF, BMP, WebP, TIFF"

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})

_HASH_CHUNK_BYTES = 1 << 20  # read files in 1 MiB pieces when hashing, so big files need no big buffer

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image
_ALLOWED_SOURCES = "a path (str or pathlib.Path), bytes, a binary file object (opened with 'rb') or a PIL.Image.Image"


# --------------------------------------------------------------------------------------------------
# Finding image files
# --------------------------------------------------------------------------------------------------


def is_image_file(path: str | os.PathLike) -> bool:
    """True if `path`'s extension is one of IMAGE_EXTENSIONS (any case) and the name is not hidden.

    Only the name is looked at; the file need not exist. Hidden names are skipped because macOS leaves
    `.DS_Store` and `._photo.jpg` (AppleDouble resource forks, not images) next to real photos.
    """
    name = Path(path).name
    if not name or name.startswith("."):
        return False
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def find_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Sorted paths of the image files in `folder` (see `is_image_file`); subfolders too if `recursive`.

    Hidden subfolders (`.git`, `.ipynb_checkpoints`, ...) are not searched. Raises ImageLoadError if
    `folder` does not exist or is not a folder.
    """
    root = Path(folder)
    if not root.exists():
        raise ImageLoadError(
            f"Image folder '{root}' does not exist (relative paths start from {Path.cwd()}); "
            "check the spelling, or pass the absolute path of the folder that holds the images."
        )
    if not root.is_dir():
        raise ImageLoadError(
            f"'{root}' is a file, not a folder; pass the folder that holds the images "
            "(use load_image() to load a single file)."
        )
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = []
    for path in candidates:
        # Skip anything under a hidden folder; parts[:-1] are the folders between root and the file.
        if any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
            continue
        if is_image_file(path) and path.is_file():
            found.append(path)
    return sorted(found)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Load `source` as an upright, fully decoded RGB image (mode "RGB"), with any file we opened closed.

    Args:
        source: a path (str or Path), the file's bytes, a binary file object (read from its current
            position; the position is restored if the object can seek), or a PIL image (normalised
            only: its current frame is used, and the caller's image is left as it was).
        max_pixels: refuse images with more pixels than this (width * height, read from the header
            before anything is decoded), to stop decompression bombs.
        name: what to call the image in error messages; defaults to the path, the file object's
            `.name`, or "<bytes>".

    Returns:
        A new PIL image in mode "RGB" with EXIF orientation applied, transparency composited onto
        white, 16-bit/float greyscale scaled to 8 bits, and (for animations) the first frame. Its
        `.info` is empty: the pixels are the whole result, so loading it again changes nothing.

    Raises:
        ImageLoadError: the file is missing, a folder, empty, truncated, corrupt, not an image, in a
            format we do not load, or larger than `max_pixels`.
        TypeError: `source` is none of the types above.
    """
    _check_max_pixels(max_pixels)

    if isinstance(source, Image.Image):
        label = name or getattr(source, "filename", "") or "<PIL image>"
        _check_pixel_count(source.size, label, max_pixels)
        return _normalise(source, label)

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        _check_is_readable_file(path, label)
        try:
            file = open(path, "rb")
        except OSError as exc:
            raise ImageLoadError(
                f"Could not open image file '{label}': {exc.strerror or exc}. "
                "Check that the file exists and that you may read it."
            ) from exc
        with file:  # closes the file however decoding ends; the returned image holds no reference to it
            return _decode(file, label, max_pixels)

    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        data = bytes(source)
    elif hasattr(source, "read"):
        label = name or str(getattr(source, "name", "") or "<file object>")
        data = _read_file_object(source, label)
    else:
        raise TypeError(f"load_image() got a {type(source).__name__}; pass {_ALLOWED_SOURCES}.")

    if not data:
        raise ImageLoadError(f"Image '{label}' is empty (0 bytes); it holds no image. Check where it came from.")
    return _decode(io.BytesIO(data), label, max_pixels)


def _check_max_pixels(max_pixels: int) -> None:
    """Reject a nonsensical limit early, with the value received."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int (default {MAX_PIXELS:,}); got {max_pixels!r}.")


def _check_is_readable_file(path: Path, label: str) -> None:
    """Turn 'missing', 'a folder' and 'empty' into messages that say what to do."""
    if not path.exists():
        hint = (
            "URLs are not downloaded; save the image to a file first"
            if str(path).startswith(("http:/", "https:/"))
            else f"check the path (relative paths start from {Path.cwd()})"
        )
        raise ImageLoadError(f"Image file '{label}' does not exist; {hint}.")
    if path.is_dir():
        raise ImageLoadError(
            f"'{label}' is a folder, not an image file; use find_images('{path}') to list the images in it."
        )
    if path.stat().st_size == 0:
        raise ImageLoadError(
            f"Image file '{label}' is empty (0 bytes); it was probably not copied or downloaded completely. "
            "Copy it again."
        )


def _read_file_object(file: BinaryIO, label: str) -> bytes:
    """All bytes from the file object's current position; puts the position back if it can seek."""
    start = None
    try:
        if file.seekable():
            start = file.tell()
    except (AttributeError, OSError, ValueError):
        start = None  # not seekable (a pipe, a socket, a closed file); we can only read it once
    try:
        data = file.read()
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"Could not read image '{label}' from its file object: {exc}.") from exc
    if start is not None:
        file.seek(start)
    if isinstance(data, str):
        raise ImageLoadError(
            f"The file object for '{label}' was opened in text mode and returned str; open it with 'rb'."
        )
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"The file object for '{label}' returned {type(data).__name__} from read(); expected bytes.")
    return bytes(data)


def _check_pixel_count(size: tuple[int, int], label: str, max_pixels: int) -> None:
    """Refuse images whose header promises more than `max_pixels` pixels, before they are decoded."""
    width, height = size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"Image '{label}' is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} pixels (max_pixels), so it was not decoded: files this large can be "
            "decompression bombs that exhaust memory. If you trust the file, pass a larger limit, e.g. "
            f"load_image(..., max_pixels={width * height:_})."
        )


def _decode(file: BinaryIO, label: str, max_pixels: int) -> Image.Image:
    """Open `file` with Pillow, check its size from the header, then decode and normalise it."""
    try:
        # Pillow's own bomb guard warns at Image.MAX_IMAGE_PIXELS and raises at twice that. We turn its
        # warning into an error for the duration of this call (not globally) so that nothing large
        # slips through as a mere warning. catch_warnings restores the filters when it exits.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file, formats=_PILLOW_FORMATS)
    except UnidentifiedImageError as exc:
        raise _unidentified_error(file, label) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(
            f"Image '{label}' was refused by Pillow's decompression-bomb guard ({exc}). Our limit is "
            f"max_pixels={max_pixels:,}; Pillow's separate global limit is "
            f"PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS:,}. If you trust the file, raise both."
        ) from exc
    except Exception as exc:  # Pillow's plugins raise many types on malformed headers; all mean the same
        raise ImageLoadError(
            f"Image '{label}' has a corrupt header and could not be read ({type(exc).__name__}: {exc}); "
            "re-export or re-download it."
        ) from exc

    with image:  # frees decoder state; does not close a file object we were given
        _check_pixel_count(image.size, label, max_pixels)
        return _normalise(image, label)


def _unidentified_error(file: BinaryIO, label: str) -> ImageLoadError:
    """Explain why Pillow could not open `file`: empty, a format we do not load, or not an image at all."""
    file.seek(0)
    head = file.read(32)
    if not head:
        return ImageLoadError(f"Image '{label}' is empty (0 bytes); it holds no image. Check where it came from.")

    # Ask Pillow, with every plugin, what the file is. Image.open only reads the header, so no plugin
    # gets to decode (or run anything on) the data.
    file.seek(0)
    detected = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(file) as other:
                detected = other.format
    except Exception:
        detected = None
    if detected:
        return ImageLoadError(
            f"Image '{label}' is in {detected} format, which is not supported (supported: "
            f"{_SUPPORTED_FOR_HUMANS}); convert it to PNG or JPEG."
        )
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return ImageLoadError(
            f"Image '{label}' is a HEIC/HEIF photo (the iPhone default), which is not supported "
            f"(supported: {_SUPPORTED_FOR_HUMANS}); export it as JPEG (on iPhone: Settings > Camera > "
            "Formats > Most Compatible) or convert it."
        )
    return ImageLoadError(
        f"'{label}' is not an image file that can be read (it starts with {head[:16]!r}); it may be a "
        "renamed text/HTML file (e.g. an error page saved instead of the image) or be corrupt. "
        f"Supported formats: {_SUPPORTED_FOR_HUMANS}."
    )


def _normalise(image: Image.Image, label: str) -> Image.Image:
    """Decode `image` fully, apply EXIF orientation and convert to RGB; returns a new image."""
    try:
        image.load()
    except Exception as exc:  # OSError for truncation, SyntaxError/ValueError/struct.error for corruption
        if "truncated" in str(exc).lower():
            raise ImageLoadError(
                f"Image '{label}' is truncated: the file ends before the image data does, usually an "
                "interrupted download or copy. Copy or download it again."
            ) from exc
        raise ImageLoadError(
            f"Image '{label}' is corrupt and could not be decoded ({type(exc).__name__}: {exc}); "
            "re-export or re-download it."
        ) from exc

    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as exc:
        # A malformed EXIF block should not cost the user the picture; the pixels themselves are fine.
        logger.warning("Ignoring unreadable EXIF orientation of image '%s': %s", label, exc)
        upright = image

    rgb = _to_rgb(upright)
    if rgb is image:  # never hand back the caller's own object (convert() copies, but be certain)
        rgb = rgb.copy()
    rgb.info = {}  # metadata (EXIF orientation in particular) would be applied twice on a second load
    return rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to "RGB": transparency onto white, high bit depths scaled, colour spaces converted."""
    if image.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_rgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        if image.mode == "La":  # premultiplied LA has no direct route to RGBA in Pillow
            image = image.convert("LA")
        rgba = image.convert("RGBA")  # P/L/RGB with a transparency entry become real alpha here
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # "1", "L", "P", "CMYK" (Adobe-inverted JPEGs are un-inverted by the JPEG decoder), "YCbCr", "LAB",
    # "HSV", "RGBX" and "RGB" itself: Pillow's converters are correct for all of these.
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale a 16-bit ("I;16*"), 32-bit int ("I") or float ("F") greyscale image to 8-bit RGB.

    Pillow's `convert("L")` clips these to 0..255 instead of scaling, which makes nearly every 16-bit
    photo pure white. The range rules:
      - "I;16*": 0..65535, divided by 257 (so 65535 -> 255, 32768 -> 128).
      - "I": treated as 16-bit if all values lie in 0..65535 (Pillow gives 16-bit files this mode
        too); otherwise stretched from its minimum to its maximum.
      - "F": 0..1 is scaled by 255, 0..255 is kept, anything else is stretched min..max;
        NaN counts as the minimum and infinities as the extremes.
    """
    values = np.asarray(image).astype(np.float32)  # (H, W)
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)

    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 257.0
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif image.mode == "F" and low >= 0 and high <= 255:
        scaled = values
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:  # constant image outside the known ranges: no contrast to preserve
        scaled = np.zeros_like(values)

    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)  # (H, W)
    return Image.fromarray(grey, mode="L").convert("RGB")


# --------------------------------------------------------------------------------------------------
# Hashing and display
# --------------------------------------------------------------------------------------------------


def image_content_hash(source: ImageSource) -> str:
    """sha256 hex digest identifying an image, a stable key for ratings and embedding caches.

    For a path, bytes or a file object it is the hash of the file's bytes, so the same file gives the
    same key whichever way it is passed (a file object is read from its current position, which is then
    restored). The bytes are not checked to be a valid image; `load_image` does that.
    For a PIL image it is the hash of its size and RGB pixels as `load_image` would return them, so an
    image and its normalised copy share a key (but differ from the key of the file they came from).
    """
    digest = hashlib.sha256()
    if isinstance(source, Image.Image):
        label = getattr(source, "filename", "") or "<PIL image>"
        rgb = _normalise(source, label)
        width, height = rgb.size
        digest.update(f"RGB {width}x{height}\n".encode())  # size in the key: 2x3 and 3x2 share pixel bytes
        digest.update(rgb.tobytes())
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(f"Cannot hash image file '{path}': it does not exist; check the path.")
        if path.is_dir():
            raise ImageLoadError(f"Cannot hash '{path}': it is a folder, not an image file.")
        try:
            with open(path, "rb") as file:
                for chunk in iter(lambda: file.read(_HASH_CHUNK_BYTES), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise ImageLoadError(f"Cannot hash image file '{path}': {exc.strerror or exc}.") from exc
    elif isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
    elif hasattr(source, "read"):
        label = str(getattr(source, "name", "") or "<file object>")
        digest.update(_read_file_object(source, label))
    else:
        raise TypeError(f"image_content_hash() got a {type(source).__name__}; pass {_ALLOWED_SOURCES}.")
    return digest.hexdigest()


def prepare_for_display(img: Image.Image, max_side: int = 1024) -> Image.Image:
    """An RGB copy of `img` whose longer side is at most `max_side`, aspect ratio kept; never upscales.

    Meant for UI thumbnails of images that came from `load_image` (orientation is not re-applied).
    The caller's image is not modified.
    """
    if not isinstance(img, Image.Image):
        raise TypeError(
            f"prepare_for_display() needs a PIL.Image.Image (e.g. from load_image); got {type(img).__name__}."
        )
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive int (pixels); got {max_side!r}.")
    display = _to_rgb(img)
    if display is img:
        display = display.copy()
    # thumbnail() keeps the aspect ratio, only ever shrinks, and first reduces by an integer factor
    # (reducing_gap) so big photos shrink fast; LANCZOS keeps the final resize sharp.
    display.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return display
