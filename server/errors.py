"""The API's one error shape: an `ApiError` raised anywhere becomes JSON ``{"error": {"kind", "message"}}`` with its
HTTP status (`server.api.install_error_handlers`); `ErrorResponse` is that body in the OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel


class ApiError(Exception):
    """An error the client gets as JSON {"error": {"kind", "message"}} with `status`."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


class ErrorBody(BaseModel):
    kind: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
