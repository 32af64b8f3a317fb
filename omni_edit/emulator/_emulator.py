"""``Emulator``: the API of docs/api.md and its result host, served on loopback.

It owns two aiohttp servers (the API, and the result files on another address, so a
second origin), the task store, the callback jobs and the records tests assert on.
"""

from __future__ import annotations

import errno
import logging
import random
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Literal

from aiohttp import web

from .._constants import (
    CALLBACK_RETRY_DELAYS,
    IDEMPOTENCY_RETENTION_SECONDS,
    RESULT_URL_LIFETIME_HOURS,
)
from ._app import Api, ApiSettings
from ._callbacks import CallbackSender
from ._credits import CreditAccount
from ._faults import API_FAULT_KINDS, RESULT_FAULT_KINDS, Fault, FaultQueue
from ._idempotency import IdempotencyLedger
from ._inputs import InputChecker
from ._jobs import JobGroup
from ._limits import RateLimiter
from ._render import ResultRenderer
from ._results import ResultHost
from ._state import EmulatedTask, EstimateMode, Outcome, TaskStore, clock
from ._stats import CallbackAttempt, Stats

__all__ = ["Emulator"]

logger = logging.getLogger("omni_edit.emulator")

# How long close() lets a request still being handled finish before cancelling it.
_SHUTDOWN_GRACE = 0.25
# Where results go when ``result_host`` cannot be bound: every system has this address,
# while 127.0.0.2 is missing on macOS unless aliased. Another port keeps it another origin.
_FALLBACK_RESULT_HOST = "127.0.0.1"


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within 0..1, got {value}")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Emulator:
    """A faithful local server of the API, for tests, benchmarks and the demo.

    Use it as ``async with Emulator(...) as emu`` or with ``start``/``close``. The knobs:

    - ``host``/``port`` serve the API, ``result_host``/``result_port`` the result files
      (port 0: any free port). A ``result_host`` this machine does not have (127.0.0.2 on
      macOS) is replaced by 127.0.0.1, on a port of its own, with a warning logged.
    - ``api_keys``: the keys accepted as ``Authorization: Bearer <key>``; any other key,
      or none, gets the API's 401. ``None`` accepts any non-empty key.
    - ``processing_time=(low, high)``: seconds a task runs, drawn uniformly per task;
      ``estimated_time`` is what ``task_info`` reports (``None``: the mean, rounded up).
      ``estimate``: ``"given"`` reports it, ``"zero"`` reports 0 and ``"absent"`` leaves
      the field out (the API's answers have been seen to do both).
    - ``failure_rate`` (codes drawn from ``failure_codes``) and ``cancel_rate``: the
      share of tasks that end failed or cancelled.
    - ``rate_429``, ``rate_5xx``, ``drop_rate``: the share of API requests answered
      429, 500/502/503, or dropped with no answer (half before, half after processing).
    - ``lost_create_rate``: the share of creates that create (and bill) their task and
      then drop the connection with no answer: the lost answer a key replay resolves.
    - ``concurrency_limit``: unfinished tasks per key; ``rate_limit``: requests per
      second per key; both answer 429 with ``Retry-After`` beyond it.
    - ``latency``: seconds every API request is held before it is handled.
    - ``result_size`` bytes per result file, valid ``result_ttl`` seconds after the task
      ends: a placeholder with real MP4 header boxes and filler media.
    - ``real_results=True`` makes each result a real, playable MP4 instead: the input
      clip (fetched when on a loopback host, else a generated clip) with a look keyed
      from the prompt and a generated sound track (docs/media.md). It needs the
      ``media`` extra and raises ``RuntimeError`` naming it when PyAV is missing. Off by
      default: rendering costs a fraction of a second per distinct result.
    - ``allow_http_callbacks`` admits ``http://`` and loopback callback URLs (the API
      admits only public https ones); ``callback_retry_delays`` space the retries.
    - ``idempotency_keys``: honour ``Idempotency-Key`` on creates, as the gateway does
      (a repeat gets the original task; another body with the key is a 409), keeping
      keys ``idempotency_retention`` seconds; ``False`` plays a deployment that ignores
      them.
    - ``credits``: the account's starting balance. Each create reserves its
      ``credits_reserved``; a completed task is charged its ``credits_used``, a failed
      or cancelled one nothing; a create the balance cannot cover is refused with 402
      ``account_balance_insufficient``. ``GET /v1/credits`` reports it, ``GET
      /v1/tasks`` lists a key's tasks, and every answer carries an ``x-request-id``.
    - ``batch_reads``: serve ``POST /v1/tasks/batch`` as the gateway does; ``False``
      plays a deployment without it, which answers ``batch_off_status`` (404 or 405).
    - ``seed`` makes every random draw reproducible.

    Raises ``ValueError`` for a knob out of range.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        result_host: str = "127.0.0.2",
        result_port: int = 0,
        api_keys: Collection[str] | None = None,
        processing_time: tuple[float, float] = (0.2, 0.5),
        estimated_time: float | None = None,
        estimate: EstimateMode = "given",
        failure_rate: float = 0.0,
        failure_codes: Sequence[str] = ("service_error",),
        cancel_rate: float = 0.0,
        rate_429: float = 0.0,
        rate_5xx: float = 0.0,
        drop_rate: float = 0.0,
        lost_create_rate: float = 0.0,
        concurrency_limit: int | None = None,
        rate_limit: float | None = None,
        latency: float = 0.0,
        result_size: int = 32768,
        result_ttl: float = RESULT_URL_LIFETIME_HOURS * 3600.0,
        allow_http_callbacks: bool = False,
        callback_retry_delays: Sequence[float] = CALLBACK_RETRY_DELAYS,
        idempotency_keys: bool = True,
        idempotency_retention: float = IDEMPOTENCY_RETENTION_SECONDS,
        credits: float = 1e9,
        real_results: bool = False,
        batch_reads: bool = True,
        batch_off_status: Literal[404, 405] = 404,
        seed: int | None = None,
    ) -> None:
        for name, value in (
            ("failure_rate", failure_rate),
            ("cancel_rate", cancel_rate),
            ("failure_rate + cancel_rate", failure_rate + cancel_rate),
            ("rate_429", rate_429),
            ("rate_5xx", rate_5xx),
            ("drop_rate", drop_rate),
            ("lost_create_rate", lost_create_rate),
            ("rate_429 + rate_5xx + drop_rate", rate_429 + rate_5xx + drop_rate),
        ):
            _check_fraction(name, value)
        low, high = processing_time
        if not 0 <= low <= high:
            raise ValueError(
                f"processing_time must be (low, high) with 0 <= low <= high, got {processing_time}"
            )
        if estimate not in ("given", "zero", "absent"):
            raise ValueError(f"estimate must be 'given', 'zero' or 'absent', got {estimate!r}")
        if batch_off_status not in (404, 405):
            raise ValueError(f"batch_off_status must be 404 or 405, got {batch_off_status}")
        if failure_rate and not failure_codes:
            raise ValueError("failure_codes must name at least one code when failure_rate > 0")
        if concurrency_limit is not None and concurrency_limit < 1:
            raise ValueError(f"concurrency_limit must be at least 1, got {concurrency_limit}")
        if not 0 <= credits < float("inf"):
            raise ValueError(f"credits must be a finite number of 0 or more, got {credits}")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit must be positive, got {rate_limit}")
        if (
            latency < 0
            or result_size < 0
            or result_ttl < 0
            or idempotency_retention < 0
            or any(d < 0 for d in callback_retry_delays)
        ):
            raise ValueError(
                "latency, result_size, result_ttl, idempotency_retention and retry delays"
                " cannot be negative"
            )

        self._host, self._port = host, port
        self._result_host, self._result_port = result_host, result_port
        self.stats = Stats()
        rng = random.Random(seed)
        self._store = TaskStore(
            rng=rng,
            processing_time=(low, high),
            estimated_time=estimated_time,
            estimate_mode=estimate,
            failure_rate=failure_rate,
            failure_codes=failure_codes,
            cancel_rate=cancel_rate,
            concurrency_limit=concurrency_limit,
            result_url=self._result_url,
        )
        self._api_faults = FaultQueue(API_FAULT_KINDS, "API host")
        self._result_faults = FaultQueue(RESULT_FAULT_KINDS, "result host")
        self._renderer = ResultRenderer() if real_results else None
        self._results = ResultHost(
            store=self._store,
            size=result_size,
            ttl=result_ttl,
            stats=self.stats,
            faults=self._result_faults,
            renderer=self._renderer,
        )
        self._jobs = JobGroup()
        self._callbacks = CallbackSender(
            jobs=self._jobs, retry_delays=callback_retry_delays, stats=self.stats
        )
        self._inputs = InputChecker()
        self._account = CreditAccount(credits)
        self._api = Api(
            settings=ApiSettings(
                api_keys=None if api_keys is None else frozenset(api_keys),
                allow_http_callbacks=allow_http_callbacks,
                latency=latency,
                rate_429=rate_429,
                rate_5xx=rate_5xx,
                drop_rate=drop_rate,
                concurrency_limit=concurrency_limit,
                idempotency_keys=idempotency_keys,
                lost_create_rate=lost_create_rate,
                batch_reads=batch_reads,
                batch_off_status=batch_off_status,
            ),
            store=self._store,
            stats=self.stats,
            faults=self._api_faults,
            rng=rng,
            callbacks=self._callbacks,
            limiter=None if rate_limit is None else RateLimiter(rate_limit),
            inputs=self._inputs,
            ledger=IdempotencyLedger(idempotency_retention),
            account=self._account,
        )
        self._runners: list[web.AppRunner] = []
        self._base_url: str | None = None

    def _result_url(self, task: EmulatedTask) -> str:
        return self._results.url_for(task)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind both servers and start serving. Raises ``OSError`` if an address is taken
        (nothing is left open then) and ``RuntimeError`` if already started."""
        if self._runners or self._base_url is not None:
            raise RuntimeError("this Emulator was already started")
        try:
            await self._jobs.open()
            await self._callbacks.open()
            await self._inputs.open()
            if self._renderer is not None:
                await self._renderer.open()
            result_host, result_port = await self._serve_results()
            self._results.base_url = _url(result_host, result_port)
            api_port = await self._serve(self._api.app(), self._host, self._port)
        except BaseException:
            await self.close()
            raise
        self._base_url = _url(self._host, api_port)
        logger.debug("emulator serving %s, results on %s", self._base_url, self._results.base_url)

    async def _serve_results(self) -> tuple[str, int]:
        """Bind the result host: at ``result_host``, else at 127.0.0.1 on another port."""
        try:
            port = await self._serve(self._results.app(), self._result_host, self._result_port)
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL or self._result_host == _FALLBACK_RESULT_HOST:
                raise
            logger.warning(
                "emulator: cannot serve results from %s (%s); serving them from %s on"
                " another port instead",
                self._result_host,
                exc.strerror or exc,
                _FALLBACK_RESULT_HOST,
            )
            host = _FALLBACK_RESULT_HOST
            port = await self._serve(self._results.app(), host, self._result_port)
            return host, port
        return self._result_host, port

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        # access_log=None: aiohttp's access log would print result links' signatures.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port).start()
        bound: int = runner.addresses[0][1]
        return bound

    async def close(self) -> None:
        """Stop serving, cancel every callback job and close every socket. Idempotent."""
        while self._runners:
            await self._runners.pop().cleanup()
        await self._jobs.close()
        await self._callbacks.close()
        await self._inputs.close()
        if self._renderer is not None:
            await self._renderer.close()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- what tests read ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the API. Raises ``RuntimeError`` before ``start``."""
        if self._base_url is None:
            raise RuntimeError("the Emulator is not started")
        return self._base_url

    @property
    def result_base_url(self) -> str:
        """``http://HOST:PORT`` of the result host. Raises ``RuntimeError`` before ``start``."""
        if self._base_url is None:
            raise RuntimeError("the Emulator is not started")
        return self._results.base_url

    @property
    def real_results(self) -> bool:
        """Whether results are real, playable clips (``real_results=True``)."""
        return self._renderer is not None

    @property
    def tasks(self) -> dict[str, EmulatedTask]:
        """Every task created, by id (a live view: do not modify it)."""
        return self._store.tasks

    @property
    def credits_remaining(self) -> float:
        """The account's balance now: the starting ``credits`` less what completed tasks
        were charged and what running tasks hold in reserve."""
        return self._account.remaining(clock())

    @property
    def callbacks_sent(self) -> list[CallbackAttempt]:
        """Every callback delivery attempt, in order: ``(task_id, status, http_status)``."""
        return self.stats.callbacks_sent

    # --- what tests do -----------------------------------------------------------------

    def inject(
        self, fault: Fault, *, method: str | None = None, path: str | None = None, times: int = 1
    ) -> None:
        """Queue ``fault`` for the next ``times`` API requests with this method (any if
        ``None``) and path prefix (any if ``None``). Raises ``ValueError`` for a fault
        kind only the result host can do."""
        self._api_faults.add(fault, method=method, path=path, times=times)

    def inject_result(self, fault: Fault, *, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests to the result host. Raises
        ``ValueError`` for a fault kind only the API can do."""
        self._result_faults.add(fault, method=None, path=None, times=times)

    def complete(self, task_id: str) -> None:
        """End the task now, completed. Raises ``KeyError`` (unknown id) or
        ``ValueError`` (already ended)."""
        self._force(task_id, "completed", None)

    def fail(self, task_id: str, code: str = "service_error") -> None:
        """End the task now, failed with error ``code``. Raises like ``complete``."""
        self._force(task_id, "failed", code)

    def cancel(self, task_id: str) -> None:
        """End the task now, cancelled (``request_cancelled``). Raises like ``complete``."""
        self._force(task_id, "cancelled", "request_cancelled")

    def _force(self, task_id: str, outcome: Outcome, code: str | None) -> None:
        self._store.force(task_id, outcome, code)
        self._callbacks.wake(task_id)

    def expire_results(self, task_id: str) -> None:
        """Make the task's result links answer 403 from now on. Raises ``KeyError``."""
        self._store.tasks[task_id].results_revoked = True
