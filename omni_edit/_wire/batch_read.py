"""The batch read, with no I/O: the request for many tasks and what its answer means.

``POST /v1/tasks/batch`` (docs/api.md#batch-reads) takes ``{"task_ids": [...]}``, at most
``TASKS_BATCH_MAX_IDS``, and answers ``{"data": [task, ...]}``; an unknown or foreign id
is simply absent. The answer is judged like any other: a body of the wrong shape is a
``MalformedResponseError`` for every id asked. Within a well-formed answer each entry
stands alone, so one bad entry fails only its own task:

- an entry about a task that was asked for becomes that task, or a
  ``MalformedResponseError`` for it alone (a bad field, or the same id listed twice);
- an entry that is about no task asked for (another id, or no id at all) is ignored:
  delivering it would end other waits with news nobody asked for, and the ids asked for
  that it might have meant are absent, so they are read singly;
- more entries than ids asked is not an answer to this request: malformed as a whole.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from .._constants import TASKS_BATCH_MAX_IDS, TASKS_BATCH_PATH
from .._exceptions import MalformedResponseError
from .._models import Task
from .convert import decode_json, excerpt, structure_task
from .protocol import ApiRequest

__all__ = ["BatchAnswer", "parse_batch_response", "tasks_batch_request"]


@attrs.frozen
class BatchAnswer:
    """What one batch answer says: ``tasks`` and per-task ``errors`` by id, and how many
    entries were ``ignored`` (about no task asked for). An id asked for in neither dict
    was absent from the answer."""

    tasks: dict[str, Task]
    errors: dict[str, MalformedResponseError]
    ignored: int = 0


def tasks_batch_request(task_ids: Sequence[str]) -> ApiRequest:
    """The batch read of already validated, distinct task ids (1 to
    ``TASKS_BATCH_MAX_IDS``). Raises ``ValueError`` for any other count: a caller's bug."""
    if not 1 <= len(task_ids) <= TASKS_BATCH_MAX_IDS:
        raise ValueError(f"a batch read takes 1 to {TASKS_BATCH_MAX_IDS} ids, got {len(task_ids)}")
    return ApiRequest("POST", TASKS_BATCH_PATH, {"task_ids": list(task_ids)}, read_only=True)


def parse_batch_response(status: int, body: bytes, asked: Collection[str]) -> BatchAnswer:
    """The tasks of a 2xx batch answer to ``asked``; ``MalformedResponseError`` when the
    answer as a whole is not the documented shape."""
    data = decode_json(body, status=status)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise MalformedResponseError(
            "the API answered a batch read without a 'data' list of tasks",
            field="data",
            status=status,
            excerpt=excerpt(body),
        )
    if len(entries) > len(asked):
        raise MalformedResponseError(
            f"the API answered a batch read of {len(asked)} tasks with {len(entries)} entries",
            field="data",
            status=status,
            excerpt=excerpt(body),
        )
    tasks: dict[str, Task] = {}
    errors: dict[str, MalformedResponseError] = {}
    ignored = 0
    for entry in entries:
        task_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(task_id, str) or task_id not in asked:
            ignored += 1
            continue
        if task_id in tasks or task_id in errors:
            tasks.pop(task_id, None)
            errors[task_id] = MalformedResponseError(
                f"the API's batch answer lists task {task_id} more than once",
                field="data",
                status=status,
                excerpt=excerpt(body),
            )
            continue
        try:
            tasks[task_id] = structure_task(entry, status=status)
        except MalformedResponseError as exc:
            errors[task_id] = exc
    return BatchAnswer(tasks, errors, ignored)
