from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import omni_edit as oe
from omni_edit import MalformedResponseError, Task, TaskStatus
from omni_edit._wire.convert import (
    _lean_task,
    converter,
    decode_json,
    structure_task,
    task_to_wire,
)

DOC_EXAMPLE: dict[str, Any] = {
    "created": 1757169743,
    "id": "task-unified-1757169743-7cvnl5zw",
    "model": "gemini-omni-flash-video-edit",
    "object": "video.generation.task",
    "progress": 0,
    "status": "pending",
    "task_info": {"can_cancel": False, "estimated_time": 60},
    "type": "video",
    "usage": {"billing_rule": "per_token", "credits_reserved": 102.34, "user_group": "default"},
}


def test_documented_example_is_structured() -> None:
    task = structure_task(DOC_EXAMPLE)
    assert task.id == "task-unified-1757169743-7cvnl5zw"
    assert task.status is TaskStatus.PENDING
    assert task.created == datetime(2025, 9, 6, 14, 42, 23, tzinfo=timezone.utc)
    assert task.estimated_time == 60.0
    assert task.can_cancel is False
    assert task.usage is not None
    assert task.usage.credits_reserved == 102.34
    assert not task.is_terminal
    assert task.result_url is None


def test_only_id_and_status_are_required_and_extras_are_ignored() -> None:
    task = structure_task({"id": "t", "status": "processing", "new_field": {"x": 1}})
    assert task == Task(id="t", status=TaskStatus.PROCESSING)


def test_nulls_take_the_defaults() -> None:
    task = structure_task(
        {"id": "t", "status": "failed", "progress": None, "task_info": None, "error": None}
    )
    assert task.progress == 0
    assert task.error is None


def test_failed_task_carries_error_and_retryability() -> None:
    task = structure_task(
        {"id": "t", "status": "failed", "error": {"code": "service_error", "message": "boom"}}
    )
    assert task.error is not None
    assert task.error.retryable
    policy = structure_task(
        {"id": "t", "status": "failed", "error": {"code": "content_policy_violation"}}
    )
    assert policy.error is not None
    assert not policy.error.retryable


def test_completed_task_exposes_result_url_and_redacts_it_in_repr() -> None:
    url = "https://files.example/r.mp4?signature=SECRET"
    task = structure_task({"id": "t", "status": "completed", "results": [url], "progress": 100})
    assert task.result_url == url
    assert "SECRET" not in repr(task)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "pending"}, "id"),
        ({"id": "t"}, "status"),
        ({"id": "t", "status": "exploded"}, "status"),
        ({"id": 5, "status": "pending"}, "id"),
        ({"id": "t", "status": "pending", "progress": "half"}, "progress"),
        ({"id": "t", "status": "pending", "progress": True}, "progress"),
        ({"id": "t", "status": "pending", "results": "https://x"}, "results"),
        ({"id": "t", "status": "pending", "task_info": {"estimated_time": "soon"}}, None),
        ({"id": "t", "status": "pending", "task_info": []}, None),
        ({"id": "t", "status": "failed", "error": "boom"}, "error"),
        ({"id": "t", "status": "pending", "created": "yesterday"}, "created"),
    ],
)
def test_wrong_shapes_are_malformed_response_errors(body: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedResponseError) as info:
        structure_task(body)
    if field is not None:
        assert info.value.field == field
        assert field in str(info.value)


@pytest.mark.parametrize("body", [[], "task", 3, None])
def test_non_object_body_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedResponseError):
        structure_task(body)


@pytest.mark.parametrize(
    "body", [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000]
)
def test_json_nested_thousands_deep_is_malformed_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(MalformedResponseError, match="nested"):
        decode_json(body)


def test_a_task_nested_just_within_the_decoder_limit_is_still_a_clean_error() -> None:
    """A value deep enough to decode but too deep to render in a message."""
    deep: Any = 1
    for _ in range(900):
        deep = [deep]
    with pytest.raises(MalformedResponseError) as info:
        structure_task({"id": "t", "status": "pending", "progress": deep})
    assert info.value.field == "progress"


@pytest.mark.parametrize("body", [b"NaN", b'{"x": Infinity}', b"[-Infinity]"])
def test_nan_and_infinity_are_not_json(body: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        decode_json(body)


@pytest.mark.parametrize(
    ("progress", "expected"), [(250, 100), (101, 100), (-5, 0), (10**30, 100), (55.9, 55)]
)
def test_progress_outside_0_to_100_is_clamped(progress: float, expected: int) -> None:
    assert structure_task({"id": "t", "status": "processing", "progress": progress}).progress == (
        expected
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"usage": {"credits_reserved": float("nan")}}, "usage.credits_reserved"),
        ({"usage": {"credits_reserved": float("inf")}}, "usage.credits_reserved"),
        ({"usage": {"credits_reserved": -1}}, "usage.credits_reserved"),
        ({"usage": {"credits_reserved": 10**400}}, "usage.credits_reserved"),
        ({"task_info": {"estimated_time": -0.5}}, "task_info.estimated_time"),
        ({"task_info": {"video_duration": float("inf")}}, "task_info.video_duration"),
        ({"progress": float("nan")}, "progress"),
    ],
)
def test_numbers_not_finite_or_negative_amounts_are_malformed(
    body: dict[str, Any], field: str
) -> None:
    with pytest.raises(MalformedResponseError) as info:
        structure_task({"id": "t", "status": "pending", **body})
    assert info.value.field == field


@pytest.mark.parametrize("task_id", ["../../../pwned-by-id", "a/b", "..", "", "x" * 129, "a\nb"])
def test_an_id_that_is_not_a_safe_task_id_is_malformed(task_id: str) -> None:
    with pytest.raises(MalformedResponseError) as info:
        structure_task({"id": task_id, "status": "completed"})
    assert info.value.field == "id"


def test_estimated_time_field_is_named_with_its_wire_path() -> None:
    with pytest.raises(MalformedResponseError) as info:
        structure_task({"id": "t", "status": "pending", "task_info": {"estimated_time": "x"}})
    assert info.value.field == "task_info.estimated_time"


def test_task_round_trips_through_the_wire_form() -> None:
    task = structure_task(
        {**DOC_EXAMPLE, "status": "completed", "progress": 100, "results": ["https://r/x.mp4"]}
    )
    assert structure_task(task_to_wire(task)) == task


# --- The lean path agrees with the converter ---------------------------------------------

_ANY_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _or_null(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, st.none())


_GOOD_TASK_INFO = st.fixed_dictionaries(
    {},
    optional={
        "can_cancel": _or_null(st.booleans()),
        "estimated_time": _or_null(st.integers(0, 600) | st.floats(0, 600)),
        "video_duration": _or_null(st.integers(0, 10) | st.floats(0, 10)),
    },
)
_GOOD_USAGE = st.fixed_dictionaries(
    {},
    optional={
        "billing_rule": _or_null(st.text(max_size=8)),
        "credits_reserved": _or_null(st.floats(0, 1e6) | st.integers(0, 10**6)),
        "user_group": _or_null(st.text(max_size=8)),
        "credits_used": _or_null(st.floats(0, 1e6) | st.integers(0, 10**6)),
        "cost": _or_null(
            st.fixed_dictionaries(
                {},
                optional={
                    "credits": _or_null(st.floats(0, 1e6) | st.integers(0, 10**6)),
                    "usd": _or_null(st.floats(0, 1e4)),
                },
            )
        ),
    },
)
_GOOD_TASK = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"[A-Za-z0-9._:-]{1,12}", fullmatch=True),
        "status": st.sampled_from([s.value for s in TaskStatus]),
    },
    optional={
        "progress": _or_null(st.integers(min_value=0, max_value=100)),
        "model": _or_null(st.text(max_size=12)),
        "created": _or_null(st.integers(min_value=0, max_value=2**34)),
        "results": _or_null(st.lists(st.text(max_size=12), max_size=2)),
        "error": st.none() | st.fixed_dictionaries({"code": st.sampled_from(["x", "y"])}),
        "task_info": _or_null(_GOOD_TASK_INFO),
        "usage": _or_null(_GOOD_USAGE),
        "object": st.just("video.generation.task"),
    },
)


@st.composite
def _wire_tasks(draw: st.DrawFn) -> dict[str, Any]:
    """A well-typed task body, then up to two fields (top-level or nested) set to any
    JSON value at all."""
    body: dict[str, Any] = draw(_GOOD_TASK)
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from([body, body.get("task_info"), body.get("usage")]))
        if isinstance(where, dict):
            key = draw(
                st.sampled_from(
                    [*body, "task_info", "usage"]
                    if where is body
                    else ["can_cancel", "estimated_time", "video_duration"]
                    if where is body.get("task_info")
                    else ["billing_rule", "credits_reserved", "user_group", "credits_used", "cost"]
                )
            )
            where[key] = draw(_ANY_JSON)
    return body


@settings(max_examples=600, deadline=None)
@given(_wire_tasks())
def test_lean_parse_equals_the_converter_or_steps_aside(body: dict[str, Any]) -> None:
    """Whatever the body, the lean path builds exactly the converter's task, or leaves
    the body to the converter (which then builds it or names the wrong field)."""
    try:
        expected: Task | None = converter.structure(body, Task)
    except Exception:
        expected = None
    lean = _lean_task(body)
    if lean is not None:
        assert expected is not None
        assert lean == expected
        assert type(lean.estimated_time) is type(expected.estimated_time)
        assert type(lean.usage.credits_reserved if lean.usage else None) is type(
            expected.usage.credits_reserved if expected.usage else None
        )
    event("lean" if lean is not None else "converter")
    if expected is None:
        with pytest.raises(MalformedResponseError):
            structure_task(body)
    else:
        assert structure_task(body) == expected


def test_lean_parse_takes_the_documented_answers() -> None:
    """The path every poll takes: the API's own shapes never fall back."""
    completed = {
        **DOC_EXAMPLE,
        "status": "completed",
        "progress": 100,
        "results": ["https://files.example.com/r.mp4?sig=1"],
        "task_info": {"can_cancel": False, "video_duration": 5},
        # What was charged, on a completed task (docs/api.md#read-a-task).
        "usage": {
            **DOC_EXAMPLE["usage"],
            "credits_used": 98.25,
            "cost": {"credits": 98.25, "usd": 1.4449},
        },
    }
    for body in (DOC_EXAMPLE, completed, {"id": "t", "status": "pending"}):
        lean = _lean_task(body)
        assert lean is not None
        assert lean == converter.structure(body, Task)
    usage = structure_task(completed).usage
    assert usage is not None
    assert (usage.credits_reserved, usage.credits_used) == (102.34, 98.25)
    assert usage.cost == oe.Cost(credits=98.25, usd=1.4449)
