"""Every error the API answers, as JSON {"error", "detail", "field"}: one line, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from scalespace import ScalespaceError
from scalespace.jobs.specs import KINDS
from scalespace.scheduler.submit import field_and_reason
from scalespace.storage import StoreUnavailable

log = logging.getLogger("scalespace.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.field, self.headers = status, code, detail, field, headers or {}


def error_response(status: int, code: str, detail: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, "field": field}, status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "spec" and parts[1] in KINDS:  # the union's tag, not a field
        parts = [parts[0]] + parts[2:]
    return ".".join(parts) or "body"


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error") or first.get("msg", "invalid JSON")
        return error_response(400, "invalid_request", f"the body is not valid JSON ({reason}); send a JSON object")
    first = errors[0]
    field = _loc(first.get("loc", ()))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "finite_number":  # JSON's NaN / Infinity literals
        msg = "NaN and Infinity are not allowed; use a finite number"
    if first.get("type") == "missing" and field == "body":
        msg = "a JSON body is required: {\"spec\": {...}}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(422, "validation", f"{field}: {msg}{more}", field)


def install_error_handlers(app: FastAPI, max_body_bytes: int) -> None:
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(ApiError)
    def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.detail, exc.field, exc.headers)

    app.add_exception_handler(RequestValidationError, _validation)

    @app.exception_handler(HTTPException)
    def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "too_large"}.get(
            exc.status_code, "invalid_request")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(ScalespaceError)
    def _user(request: Request, exc: ScalespaceError) -> JSONResponse:
        if isinstance(exc, StoreUnavailable):
            return error_response(503, "unavailable", str(exc), headers={"Retry-After": "10"})
        field, reason = field_and_reason(str(exc))
        if field is None:
            return error_response(422, "validation", str(exc))
        return error_response(422, "validation", f"spec.{field}: {reason}", f"spec.{field}")

    def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        return error_response(503, "unavailable",
                              f"the job store or broker is unreachable ({type(exc).__name__}); check SCALESPACE_REDIS_URL",
                              headers={"Retry-After": "10"})

    for cls in (RedisError, OperationalError, ConnectionError, TimeoutError):
        app.add_exception_handler(cls, _unavailable)

    @app.exception_handler(Exception)
    def _other(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the API's log")


class BodyLimit:
    """413 for a body above SCALESPACE_MAX_BODY_BYTES, declared or streamed."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope.get("headers") or () if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            too_big = JSONResponse({"error": "too_large", "detail": f"the body is above {self.max_bytes} bytes "
                                    "(SCALESPACE_MAX_BODY_BYTES)", "field": None}, status_code=413)
            return await too_big(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # FastAPI passes an HTTPException through its body parsing
                    raise HTTPException(413, f"the body is above {self.max_bytes} bytes (SCALESPACE_MAX_BODY_BYTES)")
            return message

        await self.app(scope, limited, send)
