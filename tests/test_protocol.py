from datetime import datetime, timezone

import pytest

import omni_edit as oe
from omni_edit import IdempotencyConflictError
from omni_edit._wire.protocol import (
    Attempt,
    Failure,
    Verdict,
    create_request,
    error_from_response,
    judge,
    new_idempotency_key,
    parse_retry_after,
    parse_task_response,
    task_request,
)
from omni_edit._wire.validation import validate_idempotency_key


def test_create_request_has_exactly_the_documented_fields() -> None:
    req = create_request("https://v/clip.mp4", "warmer", None)
    assert req.method == "POST"
    assert req.path == "/v1/videos/generations"
    assert req.json == {
        "model": "gemini-omni-flash-video-edit",
        "prompt": "warmer",
        "video_urls": ["https://v/clip.mp4"],
    }
    with_cb = create_request("https://v/clip.mp4", "warmer", "https://h/cb")
    assert with_cb.json is not None
    assert with_cb.json["callback_url"] == "https://h/cb"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, oe.BadRequestError),
        (401, oe.AuthenticationError),
        (402, oe.InsufficientQuotaError),
        (403, oe.PermissionDeniedError),
        (404, oe.NotFoundError),
        (413, oe.RequestTooLargeError),
        (429, oe.RateLimitError),
        (500, oe.ServerError),
        (502, oe.ServerError),
        (503, oe.ServerError),
        (409, oe.APIError),
    ],
)
def test_each_status_maps_to_its_error_class(status: int, cls: type[oe.APIError]) -> None:
    body = b'{"error": {"code": 1, "message": "m", "type": "t", "param": "prompt"}}'
    err = error_from_response(status, {}, body)
    assert type(err) is cls
    assert (err.status, err.code, err.message, err.type, err.param) == (
        status,
        1,
        "m",
        "t",
        "prompt",
    )


@pytest.mark.parametrize(
    "body", [b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"", b"[1,2]", b'{"e":1}']
)
def test_non_json_error_body_keeps_class_and_an_excerpt(body: bytes) -> None:
    err = error_from_response(502, {}, body)
    assert isinstance(err, oe.ServerError)
    assert err.status == 502
    if body.startswith(b"<html>"):
        assert "502 Bad Gateway" in err.message


def test_retry_after_header_in_seconds_and_as_http_date() -> None:
    assert parse_retry_after("12") == 12.0
    now = datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None


def test_retry_after_falls_back_to_the_suggestion_text() -> None:
    err = error_from_response(
        429,
        {},
        b'{"error": {"code": 429, "message": "slow down", "type": "rate_limit_error",'
        b' "fallback_suggestion": "retry after 60 seconds"}}',
    )
    assert err.retry_after == 60.0
    assert error_from_response(429, {"Retry-After": "3"}, b"").retry_after == 3.0


@pytest.mark.parametrize(
    ("attempt", "idempotent", "verdict"),
    [
        (Attempt(status=200), False, Verdict.SUCCESS),
        (Attempt(status=429), False, Verdict.RETRY),
        (Attempt(status=503), False, Verdict.RETRY),
        (Attempt(status=500), False, Verdict.UNCERTAIN),
        (Attempt(status=502), False, Verdict.UNCERTAIN),
        (Attempt(status=504), False, Verdict.UNCERTAIN),
        (Attempt(status=500), True, Verdict.RETRY),
        (Attempt(status=400), True, Verdict.FAIL),
        (Attempt(status=401), False, Verdict.FAIL),
        (Attempt(status=404), True, Verdict.FAIL),
        (Attempt(failure=Failure.NOT_SENT), False, Verdict.RETRY),
        (Attempt(failure=Failure.LOST), False, Verdict.UNCERTAIN),
        (Attempt(failure=Failure.TIMEOUT), False, Verdict.UNCERTAIN),
        (Attempt(failure=Failure.LOST), True, Verdict.RETRY),
        (Attempt(failure=Failure.TIMEOUT), True, Verdict.RETRY),
    ],
)
def test_post_is_resent_only_when_it_certainly_created_nothing(
    attempt: Attempt, idempotent: bool, verdict: Verdict
) -> None:
    assert judge(attempt, idempotent=idempotent) is verdict


@pytest.mark.parametrize(
    ("attempt", "keyed", "verdict"),
    [
        (Attempt(status=409, code="paid_outcome_unknown"), True, Verdict.RETRY),
        (Attempt(status=409, code="paid_outcome_unknown"), False, Verdict.UNCERTAIN),
        (Attempt(status=409, code="idempotency_conflict"), True, Verdict.FAIL),
        (Attempt(status=409, code="idempotency_conflict"), False, Verdict.FAIL),
    ],
)
def test_the_gateway_codes_of_a_keyed_create(
    attempt: Attempt, keyed: bool, verdict: Verdict
) -> None:
    assert judge(attempt, idempotent=keyed) is verdict


def test_a_create_carries_its_key_and_keys_are_fresh_and_well_formed() -> None:
    keys = {new_idempotency_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert validate_idempotency_key(key) == key
    req = create_request("https://v/clip.mp4", "warmer", None, "key-0123456789abcdef")
    assert req.idempotency_key == "key-0123456789abcdef"
    assert not req.idempotent  # by its method; replaying is the transport's decision


def test_a_conflict_answer_is_its_own_error_class() -> None:
    body = b'{"error": {"code": "idempotency_conflict", "message": "used", "type": "x"}}'
    error = error_from_response(409, {}, body)
    assert isinstance(error, IdempotencyConflictError)
    assert error.code == "idempotency_conflict"
    other = error_from_response(409, {}, b'{"error": {"code": "busy", "message": "m"}}')
    assert not isinstance(other, IdempotencyConflictError)


def test_a_task_id_goes_into_its_path_percent_encoded() -> None:
    assert task_request("task-unified-1-a").path == "/v1/tasks/task-unified-1-a"
    assert task_request("ns:task.1").path == "/v1/tasks/ns%3Atask.1"


def test_an_answer_about_another_task_is_malformed() -> None:
    body = b'{"id": "task-unified-1-b", "status": "completed", "results": ["https://x/r"]}'
    assert parse_task_response(200, body).id == "task-unified-1-b"
    with pytest.raises(oe.MalformedResponseError, match="task-unified-1-a") as info:
        parse_task_response(200, body, task_id="task-unified-1-a")
    assert info.value.field == "id"
