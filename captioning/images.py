"""The one image loader: every image the CLI, the trainer and the app see comes through `load_image`.

Photos people feed a captioner arrive in every shape Pillow can produce: rotated by an EXIF tag, with
transparency, in CMYK, as 16-bit greyscale, animated, truncated by a failed copy, or as a text file that
merely ends in `.jpg`. A captioner trained on one normalisation and served with another quietly gets worse,
so there is exactly one place that turns a user's file into pixels:

    load_image(source)          -> PIL.Image.Image, mode "RGB", fully decoded, upright, file closed
    load_image(source, min_side=224) -> the same, shorter side reduced to 224 (JPEGs decoded reduced)
    scan_folder(folder)         -> FolderScan: the image paths, and every other file with why it was skipped
    find_images(folder)         -> sorted list of image paths (scan_folder(folder).images)
    is_image_file(path)         -> does the name look like an image we load?
    IMAGE_EXTENSIONS            -> the suffixes we load (upload boxes and folder scans use this one list)
    image_content_hash(source)  -> sha256 hex, a stable key for ratings and embedding caches
    prepare_for_display(image)  -> downscaled RGB copy for UI thumbnails

What `load_image` guarantees, and why:
- EXIF orientation is applied (all 8 orientations), so a phone photo is captioned the way it is seen.
- Transparency is composited onto WHITE: a transparent logo on black is unreadable, and web images
  with alpha are meant to be seen on a light page.
- 16-bit and float greyscale are scaled to 8 bits (65535 -> 255); Pillow's plain `convert` clips them,
  which turns almost every 16-bit image solid white.
- Animated images (GIF, APNG, WebP) give their first frame.
- Phone photos load: HEIC/HEIF through pillow-heif (registered once, when this module is imported) and
  AVIF through Pillow itself (when this Pillow was built with it). For HEIF the rotation lives in the
  container (`irot`/`imir`), which libheif applies while decoding; pillow-heif then resets the EXIF
  orientation to 1, so the shared EXIF step below leaves it alone and the rotation is applied once. Pillow's
  AVIF reader turns `irot`/`imir` into an EXIF orientation instead, which the shared step applies.
- `min_side` decodes only what is needed: a 50-megapixel photo is 150 MB as RGB, a caption model reads
  224 pixels. JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg (Pillow's draft mode) and then resized
  exactly; other formats are decoded, then resized.
- Pixel counts are checked from the header *before* decoding (decompression bombs), and truncated or
  corrupt files raise instead of silently coming back half grey. Pillow's global switches
  (`Image.MAX_IMAGE_PIXELS`, `ImageFile.LOAD_TRUNCATED_IMAGES`) are never changed.
- Every failure is an `ImageLoadError` that names the file, says what was wrong and what to do.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

try:
    import pillow_heif
except ImportError:  # pinned in requirements.txt; without it HEIC files are reported as needing it
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()  # adds the "HEIF" format to Pillow; loading this module runs it once

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "FolderScan",
    "ImageLoadError",
    "ImageSource",
    "SkippedFile",
    "find_images",
    "image_content_hash",
    "is_image_file",
    "load_image",
    "prepare_for_display",
    "scan_folder",
    "skip_reason",
]

logger = logging.getLogger(__name__)


class ImageLoadError(ValueError):
    """An image could not be loaded. The message names the file, says what was wrong and what to do."""


_HEIF_READY = pillow_heif is not None
_AVIF_READY = bool(features.check("avif"))

# Lower-case, with the dot. `.jfif` is JPEG under another name; only listed if this Pillow knows it.
# `.hif` is what Fujifilm and Canon cameras call their HEIF files. The `.heics`/`.avifs` sequences
# (bursts, animations) are left out: they are not photos.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
    | ({".jfif"} if Image.registered_extensions().get(".jfif") == "JPEG" else set())
    | ({".heic", ".heif", ".hif"} if _HEIF_READY else set())
    | ({".avif"} if _AVIF_READY else set())
)

# Default decompression-bomb limit: 64 megapixels is above any phone or DSLR photo (a 60 MP camera
# gives ~9500x6300) yet far below what would exhaust memory once decoded (64e6 * 3 bytes = 192 MB RGB).
MAX_PIXELS: int = 64_000_000

# Pillow format ids we are willing to decode; they match IMAGE_EXTENSIONS. Restricting `Image.open` to
# these keeps exotic plugins (EPS runs Ghostscript, for one) away from untrusted uploads. "JPEG" also
# opens the multi-picture JPEGs (MPO) many phones write; "DIB" is the headerless variant of BMP.
# HEIF is tried before AVIF: Pillow's AVIF reader also claims the generic "mif1" brand some HEIC files carry.
_PILLOW_FORMATS: tuple[str, ...] = (
    ("JPEG", "PNG", "GIF", "BMP", "DIB", "WEBP", "TIFF")
    + (("HEIF",) if _HEIF_READY else ())
    + (("AVIF",) if _AVIF_READY else ())
)
_SUPPORTED_FOR_HUMANS = "JPEG, PNG, GIF, BMP, WebP, TIFF" + (", HEIC/HEIF" if _HEIF_READY else "") + (
    ", AVIF" if _AVIF_READY else "")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # the formats whose decoder can scale down while decoding

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})

_HASH_CHUNK_BYTES = 1 << 20  # read files in 1 MiB pieces when hashing, so big files need no big buffer

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image
_ALLOWED_SOURCES = "a path (str or pathlib.Path), bytes, a binary file object (opened with 'rb') or a PIL.Image.Image"


# --------------------------------------------------------------------------------------------------
# Finding image files
# --------------------------------------------------------------------------------------------------


# Files that are never pictures but live beside them; `scan_folder` passes over them without a word.
# Everything else that is not an image is reported, so a user never wonders where a file went.
_QUIET_SUFFIXES = frozenset({".xmp", ".aae"})  # Lightroom/darktable edit sidecars, iPhone edit sidecars
_QUIET_NAMES = frozenset({"thumbs.db", "desktop.ini"})  # written by Windows Explorer into picture folders

_VECTOR_SUFFIXES = {".svg": "SVG", ".svgz": "SVG", ".eps": "EPS", ".ai": "Adobe Illustrator",
                    ".emf": "EMF", ".wmf": "WMF"}
_RAW_SUFFIXES = frozenset({".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dng", ".erf", ".iiq", ".kdc", ".mrw",
                           ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".sr2", ".srf", ".srw",
                           ".x3f"})
_VIDEO_SUFFIXES = frozenset({".3gp", ".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mts", ".webm"})


@dataclass(frozen=True)
class SkippedFile:
    """A file in a scanned folder that is not loaded as an image, and why (a sentence saying what to do)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class FolderScan:
    """What `scan_folder` found: the image paths to load, and the other files with the reason for each."""

    images: list[Path]
    skipped: list[SkippedFile]


def is_image_file(path: str | os.PathLike) -> bool:
    """True if `path`'s extension is one of IMAGE_EXTENSIONS (any case) and the name is not hidden.

    Only the name is looked at; the file need not exist. Hidden names are skipped because macOS leaves
    `.DS_Store` and `._photo.jpg` (AppleDouble resource forks, not images) next to real photos.
    """
    name = Path(path).name
    if not name or name.startswith("."):
        return False
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def skip_reason(path: str | os.PathLike) -> str | None:
    """Why a file of this name is not loaded as an image, or None when it is (exactly when `is_image_file`).

    Only the name is looked at. The reason says what the file is and what to do, e.g. "SVG is a vector
    format; export it as PNG or JPEG" or "not an image file (.txt)".
    """
    name = Path(path).name
    if is_image_file(name):
        return None
    suffix = Path(name).suffix.lower()
    if name.startswith("."):
        return "hidden file (the name starts with '.'; macOS writes such files beside photos)"
    if suffix in _VECTOR_SUFFIXES:
        return f"{_VECTOR_SUFFIXES[suffix]} is a vector format; export it as PNG or JPEG"
    if suffix == ".pdf":
        return "PDF is a document, not an image; export the page as PNG or JPEG"
    if suffix in {".heic", ".heif", ".hif", ".heics", ".heifs"} and not _HEIF_READY:
        return "HEIC/HEIF photos need the pillow-heif package (pip install pillow-heif); or export it as JPEG"
    if suffix in {".avif", ".avifs"} and not _AVIF_READY:
        return "this Pillow was built without AVIF support (install Pillow >= 11.3 wheels); or export it as JPEG"
    if suffix in _RAW_SUFFIXES:
        return f"camera RAW file ({suffix}); export it as JPEG or TIFF from your photo editor"
    if suffix in _VIDEO_SUFFIXES:
        return f"video file ({suffix}), not an image; save a frame as JPEG to caption it"
    known = Image.registered_extensions().get(suffix)
    if known:  # a raster format Pillow could open but we do not load (PPM, PSD, ICO, ...); see _PILLOW_FORMATS
        return f"{known} images are not loaded (supported: {_SUPPORTED_FOR_HUMANS}); convert it to PNG or JPEG"
    return f"not an image file ({suffix or 'no extension'})"


def _skipped_quietly(name: str) -> bool:
    """The files `scan_folder` does not report: hidden names and the sidecars in _QUIET_SUFFIXES/_QUIET_NAMES."""
    return name.startswith(".") or Path(name).suffix.lower() in _QUIET_SUFFIXES or name.lower() in _QUIET_NAMES


def scan_folder(folder: str | os.PathLike, recursive: bool = False) -> FolderScan:
    """The image files in `folder` (sorted), and every other file with the reason it is not loaded.

    Subfolders are searched too if `recursive`. Images are chosen by name (`is_image_file`); a file named
    like an image that is not one is only found out by `load_image`. `skipped` lists every other file
    (see `skip_reason`) except these, passed over quietly:
      - hidden files and everything in hidden folders (`.DS_Store`, `._photo.jpg`, `.git/`, ...);
      - sidecars that only describe a photo: `.xmp` and `.aae` files, `Thumbs.db`, `desktop.ini`.
    Folders are never listed. Raises ImageLoadError if `folder` does not exist or is not a folder.
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
    images, skipped = [], []
    for path in sorted(candidates):
        # Skip anything under a hidden folder; parts[:-1] are the folders between root and the file.
        if any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
            continue
        if path.is_dir() or _skipped_quietly(path.name):
            continue
        if not path.is_file():
            skipped.append(SkippedFile(path, "not a regular file (a broken link, a pipe or a device)"))
            continue
        reason = skip_reason(path)
        if reason is None:
            images.append(path)
        else:
            skipped.append(SkippedFile(path, reason))
    return FolderScan(images, skipped)


def find_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Sorted paths of the image files in `folder` (see `is_image_file`); subfolders too if `recursive`.

    Hidden subfolders (`.git`, `.ipynb_checkpoints`, ...) are not searched. Raises ImageLoadError if
    `folder` does not exist or is not a folder. `scan_folder` also says which other files were skipped.
    """
    return scan_folder(folder, recursive).images


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
    min_side: int | None = None,
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
        min_side: if given, the result's shorter side is reduced to `min_side` pixels when it is longer
            (aspect kept, the longer side rounded down as transformers' shortest-edge resize does; never
            enlarged). JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale that stays at least that
            big, so memory follows the size needed, not the size of the photo; other formats are decoded
            whole, then resized. `captioning.preprocessing.needed_side(models)` says what the models need.
            `max_pixels` still applies to the full size in the header.

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
    _check_min_side(min_side)

    if isinstance(source, Image.Image):
        label = name or getattr(source, "filename", "") or "<PIL image>"
        _check_pixel_count(source.size, label, max_pixels)
        return _shrink(_normalise(source, label), min_side)

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
            return _decode(file, label, max_pixels, min_side)

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
    return _decode(io.BytesIO(data), label, max_pixels, min_side)


def _check_max_pixels(max_pixels: int) -> None:
    """Reject a nonsensical limit early, with the value received."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int (default {MAX_PIXELS:,}); got {max_pixels!r}.")


def _check_min_side(min_side: int | None) -> None:
    if min_side is not None and (isinstance(min_side, bool) or not isinstance(min_side, int) or min_side < 1):
        raise ValueError(f"min_side must be None (full size) or a positive int (pixels); got {min_side!r}.")


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


def _decode(file: BinaryIO, label: str, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Open `file` with Pillow, check its size from the header, then decode (reduced, when it can) and normalise it."""
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
        if min_side is not None and image.format in _JPEG_FORMATS:
            _draft_at_least(image, min_side)
        return _shrink(_normalise(image, label), min_side)


def _draft_at_least(image: Image.Image, min_side: int) -> None:
    """Ask the JPEG decoder to scale by 1/2, 1/4 or 1/8 while decoding, staying at least `min_side` on the short side.

    Called before anything is decoded. The header's size is the stored (not yet EXIF-rotated) one, but the
    shorter side is the same either way, and both sides are asked for, so the rotated result is big enough.
    The mode is left alone (None): CMYK and greyscale JPEGs are converted afterwards like any other.
    """
    width, height = image.size
    short = min(width, height)
    if short <= min_side:
        return
    scale = min_side / short
    # libjpeg picks the largest power-of-two reduction whose result is at least this in both sides.
    image.draft(None, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))


def _shrink(image: Image.Image, min_side: int | None) -> Image.Image:
    """`image` with its shorter side reduced to `min_side` (aspect kept), or `image` itself if it is not longer.

    The longer side is computed as transformers' shortest-edge resize computes it (rounded down), and the
    filter is bicubic as in CLIP's processor, so a model's own resize of the result changes nothing and,
    for formats decoded whole, the model sees the same pixels as from the full image.
    """
    if min_side is None:
        return image
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short <= min_side:
        return image
    new_long = int(min_side * long / short)
    size = (min_side, new_long) if width <= height else (new_long, min_side)
    return image.resize(size, Image.Resampling.BICUBIC)


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
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1",
                                               b"msf1"):
        if not _HEIF_READY:
            return ImageLoadError(
                f"Image '{label}' is a HEIC/HEIF photo (the iPhone default); reading it needs the pillow-heif "
                "package (pip install pillow-heif), or export it as JPEG (on iPhone: Settings > Camera > "
                "Formats > Most Compatible)."
            )
        return ImageLoadError(
            f"Image '{label}' is a HEIC/HEIF photo that could not be read: it is corrupt, truncated or uses "
            "a codec this libheif lacks; export it again as HEIC or JPEG."
        )
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return ImageLoadError(
            f"Image '{label}' is an AVIF image that could not be read"
            + (": it is corrupt or truncated; export it again." if _AVIF_READY else
               ": this Pillow was built without AVIF support (install Pillow >= 11.3 wheels), or export it as JPEG.")
        )
    if b"<svg" in _text_head(file):
        return ImageLoadError(
            f"'{label}' is an SVG drawing: SVG is a vector format, which is not loaded; export it as PNG or "
            f"JPEG (supported: {_SUPPORTED_FOR_HUMANS})."
        )
    return ImageLoadError(
        f"'{label}' is not an image file that can be read (it starts with {head[:16]!r}); it may be a "
        "renamed text/HTML file (e.g. an error page saved instead of the image) or be corrupt. "
        f"Supported formats: {_SUPPORTED_FOR_HUMANS}."
    )


def _text_head(file: BinaryIO, size: int = 1024) -> bytes:
    """The first `size` bytes of `file`, lower-cased, to recognise XML text such as SVG."""
    file.seek(0)
    return file.read(size).lower()


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
    if image.mode == "RGB":
        return image  # already right; callers copy if it is someone else's, saving a full-size copy here
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


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the image file as it is seen (EXIF orientation applied), read from its header only.

    `load_image(..., min_side=...)` returns a reduced copy; this gives the size of the photo itself, without
    decoding it. Raises ImageLoadError like load_image for a file Pillow cannot open.
    """
    path = Path(path)
    _check_is_readable_file(path, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is all we read
            with Image.open(path, formats=_PILLOW_FORMATS) as image:
                width, height = image.size
                orientation = image.getexif().get(0x0112, 1)
    except Exception as exc:
        raise ImageLoadError(f"Image '{path}' could not be opened to read its size ({type(exc).__name__}: {exc})"
                             ) from exc
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


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
