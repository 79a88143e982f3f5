"""The REST API for raters and scripts: a set's queue, ratings, results and progress, beside `/api/v1/caption`
and under the same accounts (`server.auth`).

    GET    /api/v1/sets                                    the sets (name, blind, overlap, scale, owner, counts)
    GET    /api/v1/sets/{set}/next                         {"item": {"image_hash", "image_id", "image_url",
                                                           "lease_expires_at", "captions": [{"caption_id",
                                                           "caption", "model"}]}} or {"item": null}: the next image
                                                           of the caller's queue, leased to them (`rating.queue`);
                                                           "model" only for those who may see the set's names
    GET    /api/v1/sets/{set}/images/{image_hash}          the image's display copy (PNG)
    POST   /api/v1/sets/{set}/ratings                      {"image_hash", "caption_id", "score"} -> 201
    DELETE /api/v1/sets/{set}/ratings/{image_hash}/{caption_id}   the caller's own rating of that caption
    GET    /api/v1/sets/{set}/results                      the accuracy table (names of a blind set: its owner and
                                                           admins only, 403 for anyone else)
    GET    /api/v1/sets/{set}/progress                     images complete at the overlap, per rater, the caller's own

Who rates: with --login, the signed-in account, always; a request naming another rater (``rater``) is refused
with 403 and stored under nobody's name. Without --login (local, single-user use), the ``rater`` field or query
parameter names the rater, as the page's typed name does.

Errors as the rest of the API (`{"error": {"kind", "message"}}`): 401 unauthorized, 403 forbidden, 404 unknown_set /
unknown_caption / not_found, 409 overlap_full (the caption has its ratings already), 422 invalid_score /
invalid_request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from rating import access, queue, sets
from rating.images import display_path
from rating.store import CaptionNotFoundError, EvaluationSetNotFoundError, OverlapFullError, RatingStore
from rating.validation import DEFAULT_SCALE, parse_scale, validate_name

from .auth import Caller, caller_dependency
from .errors import ApiError, ErrorResponse

API_PREFIX = "/api/v1"


class RatingIn(BaseModel):
    image_hash: str = Field(..., description="the image, as `next` gave it")
    caption_id: str = Field(..., description="the caption, as `next` gave it")
    score: int = Field(..., description="on the set's scale (0 unrelated, 1 partly right, 2 fully accurate)")
    rater: str | None = Field(None, description="without --login only: who is rating (with --login: you)")


def _scale(info: dict[str, Any]) -> list[int]:
    scale = info["settings"].get("scale")
    return list(parse_scale(scale) if scale is not None else DEFAULT_SCALE)


def create_rating_router(state: Any) -> APIRouter:
    """The routes above over `state.config.store` (a RatingStore); `state` is the API's `ApiState`."""
    router = APIRouter(tags=["rating"])
    caller_of = caller_dependency(state)
    errors = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)}

    def store() -> RatingStore:
        if state.config.store is None:
            raise ApiError(404, "not_found", "this server keeps no ratings (start it with the page: python app.py)")
        return state.config.store

    def the_set(name: str) -> dict[str, Any]:
        try:
            return store().get_set(name)
        except EvaluationSetNotFoundError:
            raise ApiError(404, "unknown_set", f"no evaluation set {name!r}; GET {API_PREFIX}/sets lists them") from None
        except ValueError as e:
            raise ApiError(422, "invalid_request", str(e)) from None

    def rater_of(caller: Caller, named: str | None, *, required: bool = True) -> str | None:
        """Who rates: the account with --login (naming anyone else is 403), else the named rater."""
        if state.config.login:
            if caller.name is None:
                raise ApiError(403, "forbidden", "rating needs a user account; the service token only captions "
                               "(python -m rating users token NAME gives an account's token)")
            if named is not None and named.strip() != caller.name:
                raise ApiError(403, "forbidden", f"you are signed in as {caller.name!r}; ratings are stored under "
                               "your own name only")
            return caller.name
        name = named if named is not None else caller.name
        if name is None:
            if required:
                raise ApiError(422, "invalid_request", "name the rater: ?rater=NAME, or \"rater\" in the body (a "
                               "server started with --login takes it from the account)")
            return None
        try:
            return validate_name(name, "rater name")
        except ValueError as e:
            raise ApiError(422, "invalid_request", str(e)) from None

    def may_see_names(name: str, caller: Caller, rater: str | None) -> bool:
        who = caller.name if state.config.login else (rater or caller.name)
        admins = access.admins_of(store(), who, state.config.admins, login=state.config.login)
        return access.may_see_names(store(), name, who, admins)

    def model_of(name: str, image_hash: str, caption_id: str) -> str:
        model = queue.model_of(store(), name, image_hash, caption_id)
        if model is None:
            raise ApiError(404, "unknown_caption", f"no caption {caption_id!r} of image {image_hash!r} in set "
                           f"{name!r}; use the ids that {API_PREFIX}/sets/{name}/next gives")
        return model

    @router.get(f"{API_PREFIX}/sets", responses=errors)
    def list_sets(caller: Caller = Depends(caller_of)) -> dict[str, Any]:
        """The evaluation sets: name, blind, overlap (raters per caption; null: everyone), scale, owner, counts."""
        return {"sets": [{"name": s["name"], "blind": s["blind"], "overlap": s["overlap"], "scale": _scale(s),
                          "owner": s["owner"], "created_at": s["created_at"], "images": s["images"],
                          "captions": s["captions"], "ratings": s["ratings"], "raters": s["raters"]}
                         for s in store().list_sets()]}

    @router.get(f"{API_PREFIX}/sets/{{name}}/next", responses=errors)
    def next_item(name: str, request: Request, rater: str | None = None,
                  caller: Caller = Depends(caller_of)) -> dict[str, Any]:
        """The next image of your queue, leased to you for a few minutes; {"item": null} when nothing is left."""
        info = the_set(name)
        who = rater_of(caller, rater)
        item = queue.next_item(store(), name, who)
        if item is None:
            return {"item": None}
        show = may_see_names(name, caller, who)
        item["image_url"] = str(request.url_for("set_image", name=name, image_hash=item["image_hash"]))
        item["scale"] = _scale(info)
        item["captions"] = [c if show else {k: v for k, v in c.items() if k != "model"} for c in item["captions"]]
        return {"item": item}

    @router.get(f"{API_PREFIX}/sets/{{name}}/images/{{image_hash}}", name="set_image", response_class=FileResponse,
                responses=errors)
    def image(name: str, image_hash: str, caller: Caller = Depends(caller_of)) -> FileResponse:
        """An image of the set, as the page shows it (PNG)."""
        the_set(name)
        if not store().models_of(name, image_hash):
            raise ApiError(404, "not_found", f"no image {image_hash!r} in set {name!r}")
        path = display_path(state.config.image_dir, image_hash) if state.config.image_dir else None
        if path is None or not path.is_file():
            raise ApiError(404, "not_found", f"image {image_hash!r} has no picture on this server (it was imported "
                           "by name only)")
        return FileResponse(path, media_type="image/png")

    @router.post(f"{API_PREFIX}/sets/{{name}}/ratings", status_code=201, responses=errors)
    def rate(name: str, body: RatingIn, caller: Caller = Depends(caller_of)) -> dict[str, Any]:
        """Rate one caption (201). 409 when the caption has its ratings already; 422 for a score off the scale."""
        the_set(name)
        who = rater_of(caller, body.rater)
        model = model_of(name, body.image_hash, body.caption_id)
        try:
            old = store().rate(name, who, body.image_hash, model, body.score)
        except OverlapFullError as e:
            raise ApiError(409, "overlap_full", str(e)) from None
        except CaptionNotFoundError as e:
            raise ApiError(404, "unknown_caption", str(e)) from None
        except ValueError as e:
            raise ApiError(422, "invalid_score", str(e)) from None
        if state.metrics is not None:
            state.metrics.rating_saved("api")
        return {"rating": {"image_hash": body.image_hash, "caption_id": body.caption_id, "score": body.score,
                           "rater": who, "replaced": old}}

    @router.delete(f"{API_PREFIX}/sets/{{name}}/ratings/{{image_hash}}/{{caption_id}}", responses=errors)
    def unrate(name: str, image_hash: str, caption_id: str, rater: str | None = None,
               caller: Caller = Depends(caller_of)) -> dict[str, Any]:
        """Take back your own rating of one caption (undo); 404 when you have none there."""
        the_set(name)
        who = rater_of(caller, rater)
        model = model_of(name, image_hash, caption_id)
        if not store().delete_rating(name, who, image_hash, model):
            raise ApiError(404, "not_found", f"you ({who}) have no rating of caption {caption_id!r} in set {name!r}")
        return {"deleted": {"image_hash": image_hash, "caption_id": caption_id, "rater": who}}

    @router.get(f"{API_PREFIX}/sets/{{name}}/results", responses=errors)
    def results(name: str, rater: str | None = None, caller: Caller = Depends(caller_of)) -> dict[str, Any]:
        """The accuracy table (total, accuracy %, rank, coverage); a blind set's only for its owner and admins."""
        info = the_set(name)
        who = rater_of(caller, rater, required=False)
        if not may_see_names(name, caller, who):
            raise ApiError(403, "forbidden", access.names_refused(name, login=state.config.login))
        found = sets.set_results(store(), name, metrics=False)
        table = sets.results_table(found.summary)
        rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
                for row in table.to_dict("records")]
        return {"set": name, "scale": _scale(info), "reviewed": found.reviewed, "message": found.message,
                "raters": found.raters, "models": rows}

    @router.get(f"{API_PREFIX}/sets/{{name}}/progress", responses=errors)
    def progress(name: str, rater: str | None = None, caller: Caller = Depends(caller_of)) -> dict[str, Any]:
        """Images and captions complete at the set's overlap, ratings per rater, and yours (what is left to you)."""
        the_set(name)
        return queue.progress(store(), name, rater_of(caller, rater, required=False))

    return router
