"""The API's checks on a create request (docs/api.md#create-a-task).

Each refusal is a ``Rejection`` carrying the HTTP error to send. The internal-host test
is the SDK's own (``omni_edit._wire.validation``), which implements
docs/reliability.md#callback-urls's range list; the emulator applies it on the server
side as the API would.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import attrs

from .._constants import EDIT_MODE_FORBIDDEN_FIELDS, MAX_CALLBACK_URL_LENGTH, MODEL, VIDEO_URL_COUNT
from .._wire.validation import is_internal_host, is_loopback_host

__all__ = ["CreateRequest", "Rejection", "parse_create_body"]


class Rejection(Exception):
    """A request the API refuses, with the error body's fields."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param


@attrs.frozen
class CreateRequest:
    """A create body that passed every check."""

    prompt: str
    video_url: str
    callback_url: str | None


def _invalid(param: str, message: str) -> Rejection:
    return Rejection(400, "invalid_parameter", message, param=param)


def parse_create_body(raw: bytes, *, allow_http_callbacks: bool) -> CreateRequest:
    """The checked fields of a create body, or a ``Rejection``.
    A wrong model name is answered 404 ``not_found_error`` (docs/api.md#http-errors: "model or task
    not found"); a missing or non-string model is a 400 naming ``model``.
    """
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Rejection(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise Rejection(400, "invalid_json", "The request body must be a JSON object.")

    model = body.get("model")
    if not isinstance(model, str):
        raise _invalid("model", f"model is required and must be the string {MODEL!r}.")
    if model != MODEL:
        raise Rejection(
            404, "model_not_found", f"The model {model!r} does not exist.", param="model"
        )
    for field in EDIT_MODE_FORBIDDEN_FIELDS:
        if field in body:
            raise Rejection(
                400,
                "unsupported_parameter",
                f"{field} is not accepted in edit mode: the output follows the input video.",
                param=field,
            )
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("prompt", "prompt is required and must be a non-empty string.")
    return CreateRequest(
        prompt=prompt,
        video_url=_video_url(body.get("video_urls")),
        callback_url=_callback_url(body.get("callback_url"), allow_http_callbacks),
    )


def _host(url: str) -> tuple[str, str] | None:
    """``(scheme, host)`` of an absolute URL, or ``None`` if it is not one."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if not host or any(c.isspace() for c in url):
        return None
    return parts.scheme.lower(), host


def _video_url(value: object) -> str:
    if not isinstance(value, list) or len(value) != VIDEO_URL_COUNT:
        raise _invalid(
            "video_urls", f"video_urls must be an array of exactly {VIDEO_URL_COUNT} URL."
        )
    url = value[0]
    parsed = _host(url) if isinstance(url, str) else None
    if parsed is None or parsed[0] not in ("http", "https"):
        raise _invalid("video_urls", "video_urls[0] must be an http:// or https:// URL.")
    return str(url)


def _callback_url(value: object, allow_http: bool) -> str | None:
    if value is None:
        return None
    parsed = _host(value) if isinstance(value, str) else None
    if parsed is None:
        raise _invalid("callback_url", "callback_url must be an absolute https:// URL.")
    assert isinstance(value, str)
    scheme, host = parsed
    if len(value) > MAX_CALLBACK_URL_LENGTH:
        raise _invalid(
            "callback_url", f"callback_url must be at most {MAX_CALLBACK_URL_LENGTH} characters."
        )
    allowed_schemes = ("http", "https") if allow_http else ("https",)
    if scheme not in allowed_schemes:
        raise _invalid("callback_url", "callback_url must use https://.")
    if is_internal_host(host) and not (allow_http and is_loopback_host(host)):
        raise _invalid("callback_url", "callback_url must not point at an internal host.")
    return value
