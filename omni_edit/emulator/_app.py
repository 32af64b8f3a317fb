"""The API application: authentication, limits, injected faults and the endpoints.

Every API request goes through one middleware, in this order: the in-flight count and
the request record, ``latency``, a queued or random fault (those that replace the
request act here, before anything is processed), the key, the rate limit, then the
endpoint; a fault that acts after processing spoils the endpoint's answer last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from .._constants import (
    CREATE_PATH,
    CREDITS_PATH,
    IDEMPOTENCY_CONFLICT_CODE,
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_KEY_MIN_LENGTH,
    IDEMPOTENCY_REPLAYED_HEADER,
    LIST_PAGE_SIZE_MAX,
    MODEL,
    PAID_OUTCOME_UNKNOWN_CODE,
    REQUEST_ID_HEADERS,
    TASK_PATH_PREFIX,
    TASKS_BATCH_MAX_IDS,
    TASKS_BATCH_PATH,
    TASKS_PATH,
)
from .._wire.validation import is_task_id
from ._callbacks import CallbackSender
from ._credits import CreditAccount
from ._errors import error_response
from ._faults import PROCESSING_KINDS, Fault, FaultQueue, drop_connection
from ._idempotency import Conflict, IdempotencyLedger, InProgress, Replay
from ._inputs import InputChecker
from ._limits import RateLimiter
from ._state import TaskStore, clock, estimate_credits
from ._stats import RequestRecord, Stats
from ._validation import CreateRequest, Rejection, parse_create_body

__all__ = ["Api", "ApiSettings"]

logger = logging.getLogger("omni_edit.emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# docs/api.md#http-errors documents 413 but no size; the emulator draws the line at 1 MiB.
MAX_BODY_BYTES = 1024 * 1024
# The fingerprint of the request's key, handed from the middleware to the endpoints.
_OWNER = web.RequestKey("omni_edit.emulator.owner", str)
_RANDOM_5XX = (500, 502, 503)
_KEY_RE = re.compile(
    rf"[A-Za-z0-9._-]{{{IDEMPOTENCY_KEY_MIN_LENGTH},{IDEMPOTENCY_KEY_MAX_LENGTH}}}"
)


@attrs.frozen
class ApiSettings:
    """The knobs of the API side. ``api_keys`` ``None`` accepts any non-empty key."""

    api_keys: frozenset[str] | None
    allow_http_callbacks: bool
    latency: float
    rate_429: float
    rate_5xx: float
    drop_rate: float
    concurrency_limit: int | None
    # False: the deployment ignores Idempotency-Key (every create creates).
    idempotency_keys: bool = True
    # The share of creates handled (the task exists, billed) and then left unanswered.
    lost_create_rate: float = 0.0
    # False: a deployment without the batch read, which answers it ``batch_off_status``.
    batch_reads: bool = True
    batch_off_status: int = 404


def _retry_after(seconds: float) -> int:
    # Retry-After is whole seconds; never tell a client to come back at once.
    return max(1, math.ceil(seconds))


class Api:
    """Builds the aiohttp application that plays the API."""

    def __init__(
        self,
        *,
        settings: ApiSettings,
        store: TaskStore,
        stats: Stats,
        faults: FaultQueue,
        rng: random.Random,
        callbacks: CallbackSender,
        limiter: RateLimiter | None,
        inputs: InputChecker,
        ledger: IdempotencyLedger,
        account: CreditAccount,
    ) -> None:
        self._settings = settings
        self._store = store
        self._stats = stats
        self._faults = faults
        self._rng = rng
        self._callbacks = callbacks
        self._inputs = inputs
        self._limiter = limiter
        self._ledger = ledger
        self._account = account

    def app(self) -> web.Application:
        """The aiohttp application of the API host."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post(CREATE_PATH, self._create)
        app.router.add_post(TASKS_BATCH_PATH, self._batch)
        app.router.add_get(TASK_PATH_PREFIX + "{task_id:.*}", self._get)
        # The gateway's extras (docs/api.md#gateway-extras): balance and task list.
        app.router.add_get(CREDITS_PATH, self._credits)
        app.router.add_get(TASKS_PATH, self._list)
        return app

    def _owner(self, authorization: str | None) -> str | None:
        """A fingerprint of a valid key, or ``None``: the key itself is never kept."""
        if authorization is None:
            return None
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        if self._settings.api_keys is not None and key not in self._settings.api_keys:
            return None
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        owner = self._owner(authorization)
        record = RequestRecord(
            method=request.method,
            path=request.path,
            status=None,
            had_authorization=authorization is not None,
            authorized=owner is not None,
            time=clock(),
        )
        status: int | None = None
        self._stats.enter(record)
        try:
            response, status = await self._answer(request, handler, owner)
            if status is not None:
                # Every answer names itself, errors and injected faults included.
                record.request_id = f"req-{uuid.uuid4().hex}"
                response.headers[REQUEST_ID_HEADERS[0]] = record.request_id
            return response
        finally:
            self._stats.leave(record, status)
            logger.debug(
                "%s %s -> %s", request.method, request.path, "dropped" if status is None else status
            )

    async def _answer(
        self, request: web.Request, handler: Handler, owner: str | None
    ) -> tuple[web.StreamResponse, int | None]:
        if self._settings.latency:
            await asyncio.sleep(self._settings.latency)
        fault = self._faults.take(request.method, request.path) or self._random_fault(request)
        if fault is not None and fault.kind not in PROCESSING_KINDS:
            if fault.kind == "drop_before":
                return drop_connection(request), None
            response = fault.response()
            return response, response.status
        answer = await self._handle(request, handler, owner)
        if fault is None:
            return answer, answer.status
        if fault.kind == "drop_after":
            return drop_connection(request), None
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            return answer, answer.status
        malformed = fault.response()
        return malformed, malformed.status

    def _random_fault(self, request: web.Request) -> Fault | None:
        settings = self._settings
        if (
            settings.lost_create_rate
            and request.method == "POST"
            and request.path == CREATE_PATH
            and self._rng.random() < settings.lost_create_rate
        ):
            return Fault.drop_after()
        if not (settings.rate_429 or settings.rate_5xx or settings.drop_rate):
            return None
        draw = self._rng.random()
        if draw < settings.rate_429:
            return Fault.status(429)
        draw -= settings.rate_429
        if draw < settings.rate_5xx:
            return Fault.status(self._rng.choice(_RANDOM_5XX))
        draw -= settings.rate_5xx
        if draw < settings.drop_rate:
            # A lost connection may or may not have reached the application (docs/api.md#errors).
            return Fault.drop_before() if self._rng.random() < 0.5 else Fault.drop_after()
        return None

    async def _handle(
        self, request: web.Request, handler: Handler, owner: str | None
    ) -> web.StreamResponse:
        if owner is None:
            return error_response(
                401, "invalid_api_key", "The API key is missing, invalid or expired."
            )
        if self._limiter is not None:
            wait = self._limiter.acquire(owner, clock())
            if wait is not None:
                return error_response(
                    429,
                    "rate_limit_exceeded",
                    "Too many requests for this API key.",
                    retry_after=_retry_after(wait),
                )
        request[_OWNER] = owner
        try:
            return await handler(request)
        except Rejection as rejection:
            return error_response(
                rejection.status, rejection.code, rejection.message, param=rejection.param
            )
        except web.HTTPException as exc:
            # The router's own 404/405, in the API's JSON shape.
            code = "method_not_allowed" if exc.status == 405 else "not_found"
            return error_response(exc.status, code, exc.reason)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        owner = request[_OWNER]
        raw = await _read_body(request)
        parsed = parse_create_body(raw, allow_http_callbacks=self._settings.allow_http_callbacks)
        key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
        if key is None or not self._settings.idempotency_keys:
            return (await self._create_task(owner, parsed))[0]
        if not _KEY_RE.fullmatch(key):
            raise Rejection(
                400,
                "invalid_parameter",
                "Idempotency-Key must be 16-96 characters of [A-Za-z0-9._-].",
                param="Idempotency-Key",
            )
        seen = self._ledger.begin(owner, key, raw, clock())
        if isinstance(seen, Replay):
            self._stats.replays += 1
            task = self._store.tasks[seen.task_id]
            return web.json_response(
                task.to_json(clock()), headers={IDEMPOTENCY_REPLAYED_HEADER: "true"}
            )
        if isinstance(seen, Conflict):
            return error_response(
                409,
                IDEMPOTENCY_CONFLICT_CODE,
                "This Idempotency-Key was already used for a different request.",
            )
        if isinstance(seen, InProgress):
            return error_response(
                409,
                PAID_OUTCOME_UNKNOWN_CODE,
                "The earlier request with this Idempotency-Key is still being processed.",
                retry_after=1,
            )
        task_id: str | None = None
        try:
            response, task_id = await self._create_task(owner, parsed)
        finally:
            if task_id is None:
                self._ledger.abandon(owner, key)
            else:
                self._ledger.created(owner, key, task_id)
        return response

    async def _create_task(
        self, owner: str, parsed: CreateRequest
    ) -> tuple[web.Response, str | None]:
        """Create the task: its answer, and its id (``None`` when refused)."""
        await self._inputs.check(parsed.video_url)
        needed = estimate_credits(parsed.prompt)
        left = self._account.remaining(clock())
        if left < needed:
            # The gateway's admission check: refused before any task exists.
            refusal = error_response(
                402,
                "account_balance_insufficient",
                "The account balance cannot cover this task.",
                extra={"estimated_credits": needed, "account_balance_credits": left},
            )
            return refusal, None
        wait = self._store.seconds_until_slot(owner, clock())
        if wait is not None:
            refusal = error_response(
                429,
                "concurrency_limit_exceeded",
                f"At most {self._settings.concurrency_limit} unfinished tasks per API key.",
                retry_after=_retry_after(wait),
            )
            return refusal, None
        task = self._store.create(
            owner=owner,
            video_url=parsed.video_url,
            prompt=parsed.prompt,
            callback_url=parsed.callback_url,
        )
        self._stats.creates += 1
        self._account.reserve(task)
        if task.callback_url is not None:
            self._callbacks.watch(task)
        logger.debug("created %s (ends %s)", task.id, task.outcome)
        return web.json_response(task.creation_json()), task.id

    async def _get(self, request: web.Request) -> web.StreamResponse:
        owner = request[_OWNER]
        task_id = request.match_info["task_id"]
        if not is_task_id(task_id):
            raise Rejection(
                400,
                "invalid_task_id",
                "Task ids are 1 to 128 characters of letters, digits, '.', '_', ':' and '-'.",
                param="task_id",
            )
        task = self._store.tasks.get(task_id)
        # Another key's task is as invisible as a missing one.
        if task is None or task.owner != owner:
            raise Rejection(404, "task_not_found", "The task does not exist or has expired.")
        return web.json_response(task.read_at(clock()))

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/tasks/batch``: the tasks of this key among the ids asked, in the
        order asked; an unknown, foreign or malformed id is simply absent."""
        if not self._settings.batch_reads:
            status = self._settings.batch_off_status
            code = "method_not_allowed" if status == 405 else "not_found"
            return error_response(status, code, "Not Found" if status == 404 else "Not Allowed")
        owner = request[_OWNER]
        try:
            body = json.loads(await _read_body(request))
        except (ValueError, RecursionError):
            body = None
        ids = body.get("task_ids") if isinstance(body, dict) else None
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= TASKS_BATCH_MAX_IDS
            or not all(isinstance(i, str) for i in ids)
        ):
            raise Rejection(
                400,
                "invalid_parameter",
                f"task_ids must be a list of 1 to {TASKS_BATCH_MAX_IDS} task ids.",
                param="task_ids",
            )
        now = clock()
        found = (self._store.tasks.get(i) for i in dict.fromkeys(ids))
        data = [t.read_at(now) for t in found if t is not None and t.owner == owner]
        return web.json_response({"data": data})

    async def _credits(self, request: web.Request) -> web.StreamResponse:
        owner = request[_OWNER]
        now = clock()
        left = self._account.remaining(now)
        # One account; the key has no limit of its own, and reports what it spent.
        key = {
            "remaining_credits": left,
            "used_credits": self._account.used(now, owner),
            "unlimited_credits": True,
        }
        user = {"remaining_credits": left, "used_credits": self._account.used(now)}
        return web.json_response({"success": True, "data": {"user": user, "token": key}})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        owner = request[_OWNER]
        query = request.query
        page = _int_param(query.get("page", "1"), "page", 1, 10**9)
        size = _int_param(query.get("page_size", "20"), "page_size", 1, LIST_PAGE_SIZE_MAX)
        status, model = query.get("status"), query.get("model")
        now = clock()
        # Newest first: the store keeps creation order.
        mine = [
            t
            for t in reversed(self._store.tasks.values())
            if t.owner == owner
            and (status is None or t.status_at(now) == status)
            and model in (None, MODEL)
            and query.get("type") in (None, "video")
        ]
        items: list[dict[str, Any]] = []
        for task in mine[(page - 1) * size : page * size]:
            item = task.to_json(now)
            item.pop("results", None)  # the list carries no result links
            items.append(item)
        return web.json_response(
            {"data": items, "total": len(mine), "page": page, "page_size": size}
        )


def _int_param(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Rejection(
            400, "invalid_parameter", f"{name} must be an integer within {low}-{high}.", param=name
        )
    return value


async def _read_body(request: web.Request) -> bytes:
    too_large = Rejection(
        413, "request_too_large", f"The request body exceeds {MAX_BODY_BYTES} bytes."
    )
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)
