"""The versioned REST API (FastAPI): caption images with zoo models, list the zoo, health, readiness and metrics.

    POST /api/v1/caption   JSON {"images": [{"id", "data"}], "models", "caption_mode" | "preset", "num_captions"}
                           (data: base64 or a data: URL; an image may also be a plain base64 string) or multipart/form-data (files in `images`, the same
                           fields as form fields); returns per image and model the captions, their scores, the
                           decoding settings as recorded (`GenerationSettings.to_dict`) and the weights' sha256
    GET  /api/v1/models    the zoo listing (`captioning.zoo.list_zoo`, without server paths)
    GET  /healthz          alive (no auth: for container health checks)
    GET  /readyz           ready: the zoo is listed and the default models load (no auth)
    GET  /metrics          Prometheus text (`server.metrics`)
    GET  /docs, /redoc, /openapi.json   FastAPI's documentation, working offline: Swagger UI's and ReDoc's
                           files are served by the app itself, not a CDN (`server.docs`)

Captioning goes through the library's one path: `captioning.images.load_image` decodes the bytes (its errors
are the messages), the `ModelCache` loads entries, and `server.batching.MicroBatcher` runs
`captioning.pipeline.caption_images`, merging concurrent requests.

Every error is JSON `{"error": {"kind": ..., "message": ...}}`; the server keeps serving after it:
    400 bad_base64, bad_multipart     401 unauthorized     404 unknown_model, not_found
    413 too_large (an image over max_file_size, the page's --max-file-size), too_many_images
    415 not_an_image (load_image refused the bytes: not an image, truncated, unsupported format, too many
        pixels), unsupported_media_type (a body neither JSON nor multipart)
    422 unknown_preset, invalid_settings (e.g. greedy with num_captions > 1), invalid_request (a field missing
        or of the wrong type)
    503 model_unavailable (a broken zoo entry), zoo_unavailable, not_ready      500 internal
Auth (`server.auth`): with --login the accounts of the rating database (HTTP Basic or an account's bearer token);
else with `auth` (the page's --auth USER:PASS) HTTP Basic with the same credentials; with `api_token` a bearer
token (`Authorization: Bearer TOKEN`), also beside --login; with none of them the API is open, like the page.
/healthz, /readyz and the docs are always open; /metrics is not.
The raters' endpoints (`/api/v1/sets/...`) are `server.rating_api`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from captioning.generation import PRESETS, GenerationSettings, get_settings
from captioning.images import ImageLoadError, load_image
from captioning.preprocessing import needed_side
from captioning.zoo import ModelCache, ZooError, ZooModel, list_zoo, weight_files, weights_sha256

from .auth import caller_dependency
from .batching import MicroBatcher
from .docs import offline_docs_app
from .errors import ApiError, ErrorResponse
from .metrics import ServerMetrics
from .rating_api import create_rating_router

API_PREFIX = "/api/v1"
DEFAULT_PRESET = "consistent"
DEFAULT_MAX_FILE_SIZE = 25 * 1024 * 1024  # bytes per image; the page's default --max-file-size (25mb)
MAX_IMAGES_PER_REQUEST = 16
MAX_CAPTIONS = 10
ZOO_LISTING_SECONDS = 2.0  # an entry added to (or fixed in) the zoo folder is seen within this time


# ----------------------------------------------------------------------------------------------------------
# Request and response bodies (also what /docs shows)


class ImageIn(BaseModel):
    id: str | None = Field(None, description="the image's name in the response (default image-<i>)")
    data: str = Field(..., description="the file's bytes, base64, or a data: URL (data:image/png;base64,...)")


class CaptionRequest(BaseModel):
    images: list[ImageIn | str] = Field(..., min_length=1, description="objects with id and data, or plain base64 "
                                        "strings (named image-<i>)")
    models: list[str] | None = Field(None, description="zoo entry names (default: the server's default models)")
    caption_mode: str | None = Field(None, description=f"a decoding preset: {sorted(PRESETS)}")
    preset: str | None = Field(None, description="the same as caption_mode")
    num_captions: int = Field(1, ge=1, le=MAX_CAPTIONS, description="captions per image and model")


class ModelCaptions(BaseModel):
    model: str
    captions: list[str]
    scores: list[float]
    settings: dict[str, Any]
    weights_hash: str


class ImageCaptions(BaseModel):
    id: str
    models: list[ModelCaptions]


class CaptionResponse(BaseModel):
    preset: str
    images: list[ImageCaptions]


# ----------------------------------------------------------------------------------------------------------
# Configuration and shared state


@dataclass
class ApiConfig:
    """How the API serves. max_file_size: bytes per image (the page's --max-file-size); max_batch_wait_ms=0
    turns micro-batching off; default_models: None = the first `cache.max_models` usable zoo entries."""

    zoo_dir: Path
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    max_images: int = MAX_IMAGES_PER_REQUEST
    auth: list[tuple[str, str]] = field(default_factory=list)
    api_token: str | None = None
    # Ratings (`server.rating_api`): the page's store and display copies; `login`: accounts of that store
    # (`server.auth`); `admins`: the page's --admin names (without --login), who may see blind sets' names.
    store: Any = None
    image_dir: Path | None = None
    login: bool = False
    admins: tuple[str, ...] = ()
    max_batch_wait_ms: float = 10.0
    max_batch: int = 32
    default_models: list[str] | None = None


class ApiState:
    """What every request shares: the config, the model cache, the metrics and the micro-batcher."""

    def __init__(self, config: ApiConfig, cache: ModelCache, metrics: ServerMetrics):
        self.config, self.cache, self.metrics = config, cache, metrics
        self.batcher = MicroBatcher(max_wait_ms=config.max_batch_wait_ms, max_batch=config.max_batch,
                                    metrics=metrics)
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._listing: tuple[float, list[dict[str, Any]]] | None = None
        self._listing_lock = threading.Lock()
        metrics.watch_models(lambda: len(cache))

    def weights_hash(self, entry: Path) -> str | None:
        """sha256 of an entry's weights (as `ZooModel.weights_hash`: one file, or its shards), remembered per
        version of its weights files."""
        try:
            files = weight_files(entry)
            key = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        except (OSError, ZooError):
            return None
        if key not in self._hashes:
            self._hashes[key] = weights_sha256(entry)
        return self._hashes[key]

    def zoo_rows(self) -> list[dict[str, Any]]:
        """The zoo listing, read again at most every ZOO_LISTING_SECONDS: listing walks every entry's folder
        (about 10 ms for the demo zoo), too much to repeat for each of many concurrent requests."""
        with self._listing_lock:
            now = time.monotonic()
            if self._listing is None or now - self._listing[0] > ZOO_LISTING_SECONDS:
                try:
                    self._listing = (now, list_zoo(self.config.zoo_dir))
                except ZooError as e:
                    self._listing = None
                    raise ApiError(503, "zoo_unavailable", str(e)) from None
            return [dict(row) for row in self._listing[1]]

    def default_models(self, rows: list[dict[str, Any]]) -> list[str]:
        if self.config.default_models:
            return list(self.config.default_models)
        return [r["name"] for r in rows if "error" not in r][: self.cache.max_models]

    def load(self, names: Sequence[str]) -> list[ZooModel]:
        """The named entries, loaded (cached); unknown -> 404, broken -> 503."""
        rows = {r["name"]: r for r in self.zoo_rows()}
        unknown = [n for n in names if n not in rows]
        if unknown:
            raise ApiError(404, "unknown_model", f"model(s) {unknown} not found in the zoo; available models = "
                           f"{sorted(n for n, r in rows.items() if 'error' not in r)} (GET {API_PREFIX}/models)")
        models = []
        for name in dict.fromkeys(names):
            if "error" in rows[name]:
                raise ApiError(503, "model_unavailable", f"model {name} cannot be used: {rows[name]['error']}")
            try:
                models.append(self.cache.get(self.config.zoo_dir / name))
            except ZooError as e:
                raise ApiError(503, "model_unavailable", str(e)) from None
        return models


# ----------------------------------------------------------------------------------------------------------
# Reading a request


def decode_base64(data: str, name: str, limit: int) -> bytes:
    """The bytes of a base64 string or a data: URL; 400 when it is not base64, 413 over `limit` bytes."""
    text = data.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ApiError(400, "bad_base64", f"image {name!r}: a data URL must look like "
                           f"data:image/png;base64,<base64>; got one starting {header[:40]!r}")
    text = "".join(text.split())
    if len(text) * 3 // 4 > limit + 3:  # before decoding: never hold more than the limit
        raise ApiError(413, "too_large", f"image {name!r} is about {len(text) * 3 // 4:,} bytes; the limit is "
                       f"{limit:,} bytes per image (--max-file-size)")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_base64", f"image {name!r}: `data` is not valid base64 (nor a data: URL); send "
                       "the file's bytes base64-encoded, e.g. `base64 -w0 photo.jpg`") from None
    if len(raw) > limit:
        raise ApiError(413, "too_large", f"image {name!r} is {len(raw):,} bytes; the limit is {limit:,} bytes "
                       "per image (--max-file-size)")
    return raw


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    size = int(request.headers.get("content-length") or 0)
    if size > limit:
        raise ApiError(413, "too_large", f"the request is {size:,} bytes; at most {limit:,} are accepted")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "too_large", f"the request passed {limit:,} bytes; at most {limit:,} are accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_message(e: ValidationError | RequestValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


@dataclass
class Parsed:
    images: list[tuple[str, bytes]]
    models: list[str] | None
    preset: str | None
    num_captions: int


async def parse_request(request: Request, config: ApiConfig) -> Parsed:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit = config.max_images * (config.max_file_size * 4 // 3 + 4096) + 65536
    if kind == "application/json":
        try:
            body = CaptionRequest.model_validate_json(await read_body(request, limit))
        except ValidationError as e:
            raise ApiError(422, "invalid_request", _validation_message(e)) from None
        if len(body.images) > config.max_images:
            raise _too_many(len(body.images), config.max_images)
        names = [(img.id if isinstance(img, ImageIn) else None) or f"image-{i}" for i, img in enumerate(body.images)]
        images = [(name, decode_base64(img.data if isinstance(img, ImageIn) else img, name, config.max_file_size))
                  for name, img in zip(names, body.images)]
        return Parsed(images, body.models, _one_preset(body.caption_mode, body.preset), body.num_captions)
    if kind == "multipart/form-data":
        size = int(request.headers.get("content-length") or 0)
        if size > limit:
            raise ApiError(413, "too_large", f"the request is {size:,} bytes; at most {limit:,} are accepted")
        try:
            form = await request.form(max_files=config.max_images + 1, max_fields=64)
        except StarletteHTTPException as e:
            raise ApiError(400, "bad_multipart", f"cannot read the multipart body: {e.detail}") from None
        files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
        if not files:
            raise ApiError(422, "invalid_request", "invalid request: images: send at least one file in the "
                           "`images` field (curl -F images=@photo.jpg)")
        if len(files) > config.max_images:
            raise _too_many(len(files), config.max_images)
        images = []
        for i, file in enumerate(files):
            name = file.filename or f"image-{i}"
            if file.size is not None and file.size > config.max_file_size:
                raise ApiError(413, "too_large", f"image {name!r} is {file.size:,} bytes; the limit is "
                               f"{config.max_file_size:,} bytes per image (--max-file-size)")
            images.append((name, await file.read()))
        models = [m.strip() for value in form.getlist("models") if isinstance(value, str)
                  for m in value.split(",") if m.strip()] or None
        raw_n = form.get("num_captions") or "1"
        try:
            num_captions = int(str(raw_n))
        except ValueError:
            raise ApiError(422, "invalid_request", f"invalid request: num_captions must be an integer, got "
                           f"{raw_n!r}") from None
        if not 1 <= num_captions <= MAX_CAPTIONS:
            raise ApiError(422, "invalid_request", f"invalid request: num_captions must be in 1..{MAX_CAPTIONS}, "
                           f"got {num_captions}")
        preset = _one_preset(_text(form.get("caption_mode")), _text(form.get("preset")))
        return Parsed(images, models, preset, num_captions)
    raise ApiError(415, "unsupported_media_type", f"the body is {kind or 'of no declared type'}; send "
                   "application/json or multipart/form-data")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _too_many(count: int, limit: int) -> ApiError:
    return ApiError(413, "too_many_images", f"{count} images in one request; at most {limit} are accepted. "
                    "Send several requests (they are batched together anyway).")


def _one_preset(caption_mode: str | None, preset: str | None) -> str | None:
    if caption_mode and preset and caption_mode != preset:
        raise ApiError(422, "invalid_request", f"invalid request: caption_mode {caption_mode!r} and preset "
                       f"{preset!r} disagree; they are the same setting, give one")
    return caption_mode or preset


def resolve_settings(preset: str | None, num_captions: int) -> GenerationSettings:
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise ApiError(422, "unknown_preset", f"unknown caption_mode/preset {name!r}; choose one of {sorted(PRESETS)}")
    try:
        return get_settings(name, num_captions=num_captions) if num_captions != 1 else get_settings(name)
    except ValueError as e:
        raise ApiError(422, "invalid_settings", f"{e} (caption_mode {name!r}, num_captions {num_captions})") from None


def decode_images(images: list[tuple[str, bytes]], models: Sequence[ZooModel]) -> list[Image.Image]:
    """The library's loader on each image (decoded at the size the models use); 415 with its message."""
    side = needed_side(models)
    out = []
    for name, raw in images:
        try:
            out.append(load_image(raw, name=name, min_side=side))
        except ImageLoadError as e:
            raise ApiError(415, "not_an_image", str(e)) from None
    return out


# ----------------------------------------------------------------------------------------------------------
# The app


def _error_response(state: ApiState, status: int, kind: str, message: str,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    state.metrics.errors.labels(kind=kind).inc()
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status, headers=headers)


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its nested models written in place (openapi_extra cannot add components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def create_router(state: ApiState) -> APIRouter:
    """The API's routes; `create_app` includes them (and so does anything mounting the API elsewhere)."""
    router = APIRouter()
    guarded = [Depends(caller_dependency(state))]
    errors = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 503)}

    @router.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Alive: the process answers HTTP (the container's HEALTHCHECK)."""
        with state.metrics.timed("/healthz"):
            return {"status": "ok"}

    @router.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
    def readyz() -> dict[str, Any]:
        """Ready: the zoo is listed and the default models load (cached after the first call)."""
        with state.metrics.timed("/readyz"):
            rows = state.zoo_rows()
            names = state.default_models(rows)
            if not names:
                raise ApiError(503, "not_ready", f"the zoo {state.config.zoo_dir} has no usable entry")
            try:
                models = state.load(names)
            except ApiError as e:
                raise ApiError(503, "not_ready", e.message) from None
            return {"status": "ready", "models": [m.name for m in models]}

    @router.get(f"{API_PREFIX}/models", tags=["models"], dependencies=guarded, responses=errors)
    def models() -> dict[str, Any]:
        """The zoo: per entry its kind, base models, K, parameters, size, metrics, weights hash, or its error."""
        with state.metrics.timed(f"{API_PREFIX}/models"):
            rows = state.zoo_rows()
            defaults = set(state.default_models(rows))
            listing = []
            for row in rows:
                row = {k: v for k, v in row.items() if k != "path"}  # server paths stay private
                if "error" not in row:
                    row["weights_hash"] = state.weights_hash(state.config.zoo_dir / row["name"])
                row["default"] = row["name"] in defaults
                listing.append(row)
            return {"models": listing, "presets": sorted(PRESETS), "default_preset": DEFAULT_PRESET}

    caption_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline_schema(CaptionRequest)},
        "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": {
            "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "models": {"type": "string", "description": "comma-separated zoo entry names (or repeat the field)"},
            "caption_mode": {"type": "string", "enum": sorted(PRESETS)},
            "preset": {"type": "string", "enum": sorted(PRESETS)},
            "num_captions": {"type": "integer", "minimum": 1, "maximum": MAX_CAPTIONS}}}}}}}

    @router.post(f"{API_PREFIX}/caption", tags=["caption"], dependencies=guarded, response_model=CaptionResponse,
                 responses=errors, openapi_extra=caption_body)
    async def caption(request: Request) -> dict[str, Any]:
        """Caption each image with each model (JSON with base64 images, or a multipart upload)."""
        with state.metrics.timed(f"{API_PREFIX}/caption") as timed_models:
            parsed = await parse_request(request, state.config)
            settings = resolve_settings(parsed.preset, parsed.num_captions)
            names = parsed.models or state.default_models(await run_in_threadpool(state.zoo_rows))
            if not names:
                raise ApiError(503, "zoo_unavailable", f"the zoo {state.config.zoo_dir} has no usable entry")
            loaded = await run_in_threadpool(state.load, names)
            timed_models.extend(m.name for m in loaded)
            images = await run_in_threadpool(decode_images, parsed.images, loaded)
            future = state.batcher.submit(loaded, images, [n for n, _ in parsed.images], settings)
            results = await asyncio.wrap_future(future)
            by_model = {m.name: m for m in loaded}
            out: list[dict[str, Any]] = []
            for i, (name, _) in enumerate(parsed.images):
                row = results[i * len(loaded):(i + 1) * len(loaded)]
                out.append({"id": name, "models": [
                    {"model": r.model_name, "captions": r.captions, "scores": r.scores, "settings": r.settings,
                     "weights_hash": r.weights_hash} for r in row]})
                for r in row:
                    state.metrics.captions.labels(model=r.model_name).inc(len(r.captions))
                    tokenizer = by_model[r.model_name].tokenizer
                    state.metrics.tokens.labels(model=r.model_name).inc(
                        sum(len(tokenizer.encode(c, add_special_tokens=False)) for c in r.captions))
            return {"preset": settings.preset or "", "images": out}

    @router.get("/metrics", tags=["health"], dependencies=guarded, response_class=Response)
    def metrics() -> Response:
        """Prometheus text format."""
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @router.api_route(API_PREFIX + "/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                      include_in_schema=False)
    def not_found(rest: str) -> None:
        raise ApiError(404, "not_found", f"no endpoint {API_PREFIX}/{rest}; see /docs for the API")

    return router


def install_error_handlers(app: FastAPI, state: ApiState) -> None:
    """JSON errors for the API's routes (a mounted Gradio app keeps its own handlers)."""

    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error_response(state, e.status, e.kind, e.message, e.headers)

    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error_response(state, 422, "invalid_request", _validation_message(e))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def create_app(config: ApiConfig, *, cache: ModelCache | None = None, metrics: ServerMetrics | None = None,
               **fastapi_kwargs: Any) -> FastAPI:
    """The API as a FastAPI app (app.state.api is its `ApiState`); mount the Gradio page on it, or serve it alone."""
    state = ApiState(config, cache if cache is not None else ModelCache(), metrics or ServerMetrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.batcher.close()

    app = offline_docs_app(title="Caption Zoo API", version="1", lifespan=lifespan,
                           description=(__doc__ or "").split("\n\n")[0], **fastapi_kwargs)
    app.state.api = state
    install_error_handlers(app, state)
    app.include_router(create_rating_router(state))
    app.include_router(create_router(state))  # last: its catch-all answers unknown /api/v1 paths with 404
    return app

