from datetime import datetime, timezone
from typing import Any

import pytest

from omni_edit import MalformedResponseError, Task, TaskStatus
from omni_edit._convert import structure_task, task_to_wire

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


def test_estimated_time_field_is_named_with_its_wire_path() -> None:
    with pytest.raises(MalformedResponseError) as info:
        structure_task({"id": "t", "status": "pending", "task_info": {"estimated_time": "x"}})
    assert info.value.field == "task_info.estimated_time"


def test_task_round_trips_through_the_wire_form() -> None:
    task = structure_task(
        {**DOC_EXAMPLE, "status": "completed", "progress": 100, "results": ["https://r/x.mp4"]}
    )
    assert structure_task(task_to_wire(task)) == task
