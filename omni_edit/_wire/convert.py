"""Wire JSON <-> models, through one cattrs converter.

The API's task object nests ``can_cancel``, ``estimated_time`` and ``video_duration``
under ``task_info``; ``Task`` keeps them flat, so the hook lifts them before cattrs
structures the rest. Per docs/api.md#task-object every field but ``id`` and ``status``
may be missing, and unknown fields must be tolerated: missing and ``null`` fields take
the model default, extra keys are ignored. Anything else of the wrong shape is a
``MalformedResponseError`` naming the field, never a ``KeyError``, a ``TypeError`` or a
``RecursionError``.

Values out of range (docs/api.md#out-of-range-values): an ``id`` that is not a safe task
id (``is_task_id``) and a number that is not finite, or negative where it is an amount
(seconds, credits), are malformed; a ``progress`` outside 0-100 is clamped into it.

Every poll's answer passes through here, so ``structure_task`` tries a lean path for the
documented shape first (``_lean_task``): plain type checks and one constructor call,
about a third of the converter's cost. At the first value it does not expect it steps
aside, and the converter (the reference, with every rule above) builds the task or
names the field that is wrong. A property test holds the two equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .._exceptions import MalformedResponseError
from .._models import Balance, Cost, Task, TaskError, TaskStatus, Usage
from .validation import is_task_id

__all__ = [
    "TaskPage",
    "converter",
    "decode_json",
    "excerpt",
    "structure_balance",
    "structure_task",
    "structure_task_page",
    "task_to_wire",
]

_T = TypeVar("_T")
_TASK_INFO_FIELDS = ("can_cancel", "estimated_time", "video_duration")


def _structure_datetime(value: Any, _: type) -> datetime:
    # The API sends unix seconds; an ISO string is accepted too, always made aware UTC.
    if isinstance(value, bool):
        raise TypeError("a timestamp, not a boolean")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    raise TypeError(f"a timestamp, not {type(value).__name__}")


# cattrs' default scalar hooks coerce anything the type accepts (``str({})`` works);
# accept only JSON values of a sensible kind.
def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        return int(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _structure_float(value: Any, _: type) -> float:
    # Every float on the wire is an amount (seconds, credits): a negative one, or one that
    # is not finite (1e999 decodes to infinity), is not something the API can mean.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if not 0.0 <= number < math.inf:
            raise ValueError(f"expected a finite number of 0 or more, got {number}")
        return number
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _structure_signed(value: Any, _: type) -> float:
    # An amount that may be below zero (a balance), but never infinite or NaN.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {value!r:.40}")
        return number
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _structure_array(value: Any, _: type) -> list[Any]:
    # A string or an object is iterable too; only a JSON array is a list.
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return value


def _clamp_progress(progress: int) -> int:
    # Progress only informs a display and the poll timing: a server's 101 or -1 should
    # not end a wait, so it is held to the documented 0-100.
    return 0 if progress < 0 else 100 if progress > 100 else progress


def _structure_progress(value: Any, kind: type) -> int:
    return _clamp_progress(_structure_int(value, kind))


def _structure_task_id(value: Any, kind: type) -> str:
    task_id = _structure_str(value, kind)
    if not is_task_id(task_id):
        # The id goes into URL paths and file names: anything else is refused here.
        raise ValueError(
            "expected a task id of 1 to 128 characters of letters, digits, '.', '_', ':' and '-'"
        )
    return task_id


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {type(value).__name__}")


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_status(value: Any, _: type) -> TaskStatus:
    # Registered explicitly: TaskStatus is a str, and the str hook would take it by subclass.
    if not isinstance(value, str):
        raise TypeError(f"expected a status string, got {type(value).__name__}")
    try:
        return TaskStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in TaskStatus)
        raise ValueError(f"unknown status {value!r} (known: {known})") from None


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    # A bare string is iterable too; only a JSON array is a list of URLs.
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return tuple(_structure_str(item, str) for item in value)


def _structure_code(value: Any, _: type) -> str | int:
    # An HTTP error's ``code`` is documented as "int or str".
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected a string or integer code, got {type(value).__name__}")


def _is_optional(kind: type) -> Callable[[Any], bool]:
    return lambda t: bool(t == (kind | None))


def _optional(hook: Callable[[Any, type], _T]) -> Callable[[Any, type], _T | None]:
    def optional(value: Any, kind: type) -> _T | None:
        return None if value is None else hook(value, kind)

    return optional


_UTC = timezone.utc
_STATUSES: dict[str, TaskStatus] = {s.value: s for s in TaskStatus}


def _lean_number(value: Any) -> float | None:
    """A non-negative finite amount as ``float``, else ``None`` (for the reference path)."""
    kind = type(value)
    if kind is float:
        number: float = value
    elif kind is int:
        try:
            number = float(value)
        except OverflowError:  # beyond any float: the reference path words the error
            return None
    else:
        return None
    return number if 0.0 <= number < math.inf else None


def _lean_task(o: dict[str, Any]) -> Task | None:
    """The task for a body of exactly the documented types, or ``None`` to hand it to
    the reference path: any other type, an ``error``, a timestamp that is not a plain
    number. Nulls and absent fields take the defaults, extras are ignored, as there."""
    task_id = o.get("id")
    status = o.get("status")
    if type(task_id) is not str or type(status) is not str or not is_task_id(task_id):
        return None
    status_ = _STATUSES.get(status)
    progress = o.get("progress")
    model = o.get("model")
    created = o.get("created")
    results = o.get("results")
    info = o.get("task_info")
    usage = o.get("usage")
    if (
        status_ is None
        or o.get("error") is not None
        or (progress is not None and type(progress) is not int)
        or (model is not None and type(model) is not str)
        or (created is not None and type(created) is not int)
    ):
        return None
    if results is None:
        results_: tuple[str, ...] = ()
    elif type(results) is list and all(type(r) is str for r in results):
        results_ = tuple(results)
    else:
        return None
    estimated_time = can_cancel = video_duration = None
    if info is not None:
        if type(info) is not dict:
            return None
        estimated_time, can_cancel, video_duration = (
            info.get("estimated_time"),
            info.get("can_cancel"),
            info.get("video_duration"),
        )
        if estimated_time is not None and (estimated_time := _lean_number(estimated_time)) is None:
            return None
        if video_duration is not None and (video_duration := _lean_number(video_duration)) is None:
            return None
        if can_cancel is not None and type(can_cancel) is not bool:
            return None
    usage_ = None
    if usage is not None:
        if type(usage) is not dict:
            return None
        rule, credits, group, used, cost = (
            usage.get("billing_rule"),
            usage.get("credits_reserved"),
            usage.get("user_group"),
            usage.get("credits_used"),
            usage.get("cost"),
        )
        if (
            (rule is not None and type(rule) is not str)
            or (group is not None and type(group) is not str)
            or (credits is not None and (credits := _lean_number(credits)) is None)
            or (used is not None and (used := _lean_number(used)) is None)
        ):
            return None
        cost_ = None
        if cost is not None:
            if type(cost) is not dict:
                return None
            cost_credits, usd = cost.get("credits"), cost.get("usd")
            if (
                cost_credits is not None and (cost_credits := _lean_number(cost_credits)) is None
            ) or (usd is not None and (usd := _lean_number(usd)) is None):
                return None
            cost_ = Cost(cost_credits, usd)
        usage_ = Usage(rule, credits, group, used, cost_)
    try:
        when = None if created is None else datetime.fromtimestamp(created, tz=_UTC)
    except (OverflowError, OSError, ValueError):
        return None  # out of range: the reference path words the error
    return Task(
        task_id,
        status_,
        0 if progress is None else _clamp_progress(progress),
        model,
        when,
        results_,
        None,
        estimated_time,
        can_cancel,
        video_duration,
        usage_,
    )


def _task_hook(conv: cattrs.Converter) -> Any:
    fields = make_dict_structure_fn(
        Task,
        conv,
        id=override(struct_hook=_structure_task_id),
        progress=override(struct_hook=_structure_progress),
    )

    def hook(value: Any, _: type) -> Task:
        if not isinstance(value, Mapping):
            raise TypeError(f"a task object, not {type(value).__name__}")
        flat = {k: v for k, v in value.items() if v is not None}
        info = flat.pop("task_info", None)
        if isinstance(info, Mapping):
            for name in _TASK_INFO_FIELDS:
                if (field := info.get(name)) is not None:
                    flat[name] = field
        elif info is not None:
            raise TypeError("task_info must be an object")
        task: Task = fields(flat, Task)
        return task

    return hook


def _drop_nulls(conv: cattrs.Converter, cls: type[_T], **overrides: Any) -> Any:
    fields = make_dict_structure_fn(cls, conv, **overrides)

    def hook(value: Any, _: type) -> _T:
        if not isinstance(value, Mapping):
            raise TypeError(f"an object, not {type(value).__name__}")
        result: _T = fields({k: v for k, v in value.items() if v is not None}, cls)
        return result

    return hook


def _configure(conv: cattrs.Converter) -> cattrs.Converter:
    """Every wire rule, registered on ``conv``: the one place they are written down."""
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_structure_hook(TaskStatus, _structure_status)
    conv.register_structure_hook_func(lambda t: t == (str | int | None), _structure_code)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_str_tuple)
    # Optional scalars directly: cattrs' generic optional dispatch costs as much again as
    # the value's own hook, on every field of every response.
    for kind, scalar in (
        (int, _structure_int),
        (float, _structure_float),
        (bool, _structure_bool),
        (str, _structure_str),
        (datetime, _structure_datetime),
    ):
        conv.register_structure_hook_func(_is_optional(kind), _optional(scalar))
    conv.register_unstructure_hook(datetime, lambda d: int(d.timestamp()))
    conv.register_structure_hook(Task, _task_hook(conv))
    conv.register_structure_hook(TaskError, _drop_nulls(conv, TaskError))
    conv.register_structure_hook(Usage, _drop_nulls(conv, Usage))
    conv.register_structure_hook(Cost, _drop_nulls(conv, Cost))
    conv.register_structure_hook_func(lambda t: t == list[Any], _structure_array)
    # A balance may be overdrawn (a task settles above its reservation): any finite
    # number, negative included.
    signed = override(struct_hook=_optional(_structure_signed))
    conv.register_structure_hook(
        _UserCredits,
        _drop_nulls(conv, _UserCredits, remaining_credits=override(struct_hook=_structure_signed)),
    )
    conv.register_structure_hook(
        _KeyCredits, _drop_nulls(conv, _KeyCredits, remaining_credits=signed)
    )
    # After the classes they hold: a generated hook takes its fields' hooks when made.
    for wire in (_CreditsData, _CreditsAnswer, _TaskPageWire):
        conv.register_structure_hook(wire, _drop_nulls(conv, wire))
    return conv


# --- The gateway's other answers (docs/api.md#gateway-extras) ---------------------------
# Private shapes of the wire, structured by the same converter and its rules, then
# turned into the public models.


@attrs.frozen
class _UserCredits:
    remaining_credits: float
    used_credits: float | None = None


@attrs.frozen
class _KeyCredits:
    remaining_credits: float | None = None
    used_credits: float | None = None
    unlimited_credits: bool = False


@attrs.frozen
class _CreditsData:
    user: _UserCredits
    token: _KeyCredits | None = None


@attrs.frozen
class _CreditsAnswer:
    data: _CreditsData
    success: bool = True


@attrs.frozen
class _TaskPageWire:
    # Items stay raw here: each is built by ``structure_task`` (lean path included).
    data: list[Any]
    total: int | None = None
    page: int | None = None
    page_size: int | None = None


@attrs.frozen
class TaskPage:
    """One page of ``GET /v1/tasks``: its tasks, and the ``total`` the server claims."""

    tasks: tuple[Task, ...]
    total: int | None = None


converter = _configure(cattrs.Converter(detailed_validation=True))


def _error_path(exc: BaseException) -> tuple[str | None, str]:
    messages = cattrs.transform_error(exc) if isinstance(exc, cattrs.BaseValidationError) else []
    if not messages:
        return None, str(exc)
    first = messages[0]
    reason, _, where = first.partition(" @ ")
    field = where.removeprefix("$").lstrip(".") or None
    if field in _TASK_INFO_FIELDS:
        field = f"task_info.{field}"
    return field, reason


def structure_task(data: Any, *, status: int | None = None) -> Task:
    """Build a ``Task`` from decoded JSON, or raise ``MalformedResponseError``."""
    if type(data) is dict and (task := _lean_task(data)) is not None:
        return task
    try:
        return converter.structure(data, Task)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            field, reason = None, "nested too deeply"
        else:
            field, reason = _error_path(exc)
        if field is None and isinstance(data, Mapping):
            missing = [k for k in ("id", "status") if k not in data]
            field = missing[0] if missing else None
        where = f" field '{field}'" if field else ""
        if field and isinstance(data, Mapping) and field in data:
            reason += f" (got {_value_excerpt(lambda: repr(data[field]), 60)})"
        raise MalformedResponseError(
            f"the API answered with a task object whose{where or ' shape'} is not as"
            f" documented: {reason}",
            field=field,
            status=status,
            excerpt=_value_excerpt(lambda: json.dumps(data, default=str)),
        ) from exc


def _structure_answer(data: Any, cls: type[_T], what: str, status: int | None) -> _T:
    """``cls`` from decoded JSON, or ``MalformedResponseError`` naming the field."""
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            field, reason = None, "nested too deeply"
        else:
            field, reason = _error_path(exc)
        where = f" field '{field}'" if field else ""
        raise MalformedResponseError(
            f"the API answered {what} whose{where or ' shape'} is not as documented: {reason}",
            field=field,
            status=status,
            excerpt=_value_excerpt(lambda: json.dumps(data, default=str)),
        ) from exc


def structure_balance(data: Any, *, status: int | None = None) -> Balance:
    """A ``Balance`` from the decoded ``GET /v1/credits`` answer, or
    ``MalformedResponseError`` (also for ``"success": false``)."""
    answer = _structure_answer(data, _CreditsAnswer, "the credits request with an object", status)
    if not answer.success:
        raise MalformedResponseError(
            "the API answered the credits request with success: false",
            field="success",
            status=status,
            excerpt=_value_excerpt(lambda: json.dumps(data, default=str)),
        )
    user, key = answer.data.user, answer.data.token or _KeyCredits()
    return Balance(
        remaining_credits=user.remaining_credits,
        used_credits=user.used_credits,
        key_remaining_credits=key.remaining_credits,
        key_used_credits=key.used_credits,
        key_unlimited=key.unlimited_credits,
    )


def structure_task_page(data: Any, *, status: int | None = None) -> TaskPage:
    """One ``GET /v1/tasks`` page, or ``MalformedResponseError`` (an item that is not a
    task object is one too, named by its place)."""
    page = _structure_answer(data, _TaskPageWire, "the task list with a page", status)
    tasks: list[Task] = []
    for n, item in enumerate(page.data):
        try:
            tasks.append(structure_task(item, status=status))
        except MalformedResponseError as exc:
            exc.field = f"data[{n}]" + (f".{exc.field}" if exc.field else "")
            raise
    return TaskPage(tuple(tasks), page.total)


def _value_excerpt(render: Callable[[], str], limit: int = 200) -> str:
    """``excerpt`` of a decoded value's text, or an ellipsis for a value nested too
    deeply to render (it decoded within the recursion limit, and rendering needs more)."""
    try:
        text = render()
    except RecursionError:
        return "…"
    return excerpt(text.encode(), limit)


def task_to_wire(task: Task) -> dict[str, Any]:
    """The task as the API would send it (used by the journal and test servers)."""
    wire: dict[str, Any] = {
        "id": task.id,
        "status": task.status.value,
        "progress": task.progress,
    }
    if task.model is not None:
        wire["model"] = task.model
    if task.created is not None:
        wire["created"] = int(task.created.timestamp())
    if task.results:
        wire["results"] = list(task.results)
    if task.error is not None:
        wire["error"] = converter.unstructure(task.error)
    info = {n: getattr(task, n) for n in _TASK_INFO_FIELDS if getattr(task, n) is not None}
    if info:
        wire["task_info"] = info
    if task.usage is not None:
        wire["usage"] = converter.unstructure(task.usage)
    return wire


def excerpt(body: bytes, limit: int = 200) -> str:
    """A short, single-line, printable start of a body for error messages."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (RFC 8259)")


# ``NaN`` and ``Infinity`` are Python's extensions of JSON, not JSON: refused, as any
# other body that is not JSON.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def decode_json(body: bytes, *, status: int | None = None) -> Any:
    """Decode a JSON body, or raise ``MalformedResponseError`` with an excerpt.

    A body nested deeper than the interpreter can decode (``[[[[...`` thousands deep) is
    malformed too: every parse failure is a ``MalformedResponseError``.
    """
    try:
        # RFC 8259: JSON between systems is UTF-8; decoding first skips json's detection.
        return _DECODER.decode(body.decode())
    except RecursionError as exc:
        raise MalformedResponseError(
            "expected a JSON body but got one nested too deeply to be an API answer",
            status=status,
            excerpt=excerpt(body),
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedResponseError(
            f"expected a JSON body but got: {excerpt(body) or '(empty body)'}",
            status=status,
            excerpt=excerpt(body),
        ) from exc
