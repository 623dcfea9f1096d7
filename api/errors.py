"""Every error answer is a FHIR OperationOutcome with a clear message; bad input is never a 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.starting import StartRefused
from messaging.outcome import operation_outcome

FHIR_JSON = "application/fhir+json"

_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    409: "duplicate",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    503: "transient",
}


def outcome_response(
    status: int, diagnostics: str | list[str], *, headers: dict | None = None, expression: list[str] | None = None
) -> JSONResponse:
    return JSONResponse(
        operation_outcome(diagnostics, code=_ISSUE_CODES.get(status, "processing"), expression=expression),
        status_code=status,
        media_type=FHIR_JSON,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return outcome_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(StartRefused)
    async def _start_refused(request: Request, exc: StartRefused) -> JSONResponse:
        return outcome_response(exc.status, exc.detail, expression=[exc.expression] if exc.expression else None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        messages, paths = [], []
        for error in exc.errors():
            location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            messages.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
            paths.append(location)
        return outcome_response(422, messages, expression=paths)
