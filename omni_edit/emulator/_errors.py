"""The API's HTTP error bodies (docs/api.md#http-errors), built in one place.

Errors the emulator decides itself carry string codes (``invalid_parameter``,
``invalid_task_id`` ...); bodies of injected ``Fault.status`` answers carry the numeric
status as ``code``, so clients meet both spellings the API documents (``<int or str>``).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

__all__ = [
    "ERROR_TYPES",
    "RETRY_HINT_STATUSES",
    "error_body",
    "error_response",
    "html_page",
    "retry_hint",
]

# docs/api.md#http-errors; statuses it does not list get the generic type.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    502: "upstream_error",
    503: "service_unavailable_error",
}
_GENERIC_TYPE = "api_error"
# Statuses whose documented body carries a "retry after N seconds" suggestion.
RETRY_HINT_STATUSES = frozenset({429, 503})


def retry_hint(seconds: int) -> str:
    """The ``fallback_suggestion`` wording of docs/api.md#http-errors."""
    return f"retry after {seconds} seconds"


def error_body(
    status: int,
    code: int | str,
    message: str,
    *,
    param: str | None = None,
    retry_after: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"error": {...}}`` with the ``type`` docs/api.md#http-errors gives for ``status``;
    ``extra`` adds fields (a refusal's figures)."""
    error: dict[str, Any] = {
        **(extra or {}),
        "code": code,
        "message": message,
        "type": ERROR_TYPES.get(status, _GENERIC_TYPE),
    }
    if param is not None:
        error["param"] = param
    if retry_after is not None:
        error["fallback_suggestion"] = retry_hint(retry_after)
    return {"error": error}


def error_response(
    status: int,
    code: int | str,
    message: str,
    *,
    param: str | None = None,
    retry_after: int | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    """A JSON error answer; ``retry_after`` also sets the ``Retry-After`` header."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = error_body(status, code, message, param=param, retry_after=retry_after, extra=extra)
    return web.Response(
        status=status,
        body=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def html_page(status: int) -> bytes:
    """The kind of page a reverse proxy shows instead of the API's JSON."""
    try:
        title = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
