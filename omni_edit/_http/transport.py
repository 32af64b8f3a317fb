"""The thin layer that talks HTTP to the API: session, in-flight cap, timeouts, retries.

What an answer *means* and whether to retry is decided in ``_wire.protocol`` (pure); this
module carries those decisions out. Guarantees:

- at most ``max_concurrency`` requests are in flight over everything the client does
  (API calls, result downloads and probes share the slots of one ``ClientLimits``);
- the API key is attached per request, only to the API origin, and redirects are not
  followed on API calls, so the key never reaches another host;
- a create is sent again only with the same ``Idempotency-Key`` (the gateway then answers
  with the original task), or, with replays off, only when it certainly created nothing
  (see ``_wire.protocol.judge``); a create whose answer stays lost is a
  ``SubmissionUncertainError`` carrying its key;
- a 429 pauses every request of the client for the server's ``Retry-After``;
- retries draw on a client-wide ``RetryBudget``;
- a key the server echoes back in a body is replaced by ``REDACTED`` before anything
  reads the body, so no error, task or log made from it can show the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping

import aiohttp
import anyio
import attrs
from aiohttp.hdrs import CONTENT_ENCODING
from multidict import CIMultiDict

from .._constants import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_REPLAYED_HEADER,
    MAX_RESPONSE_BYTES,
)
from .._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    IdempotencyConflictError,
    MalformedResponseError,
    SubmissionUncertainError,
)
from .._redact import MIN_SECRET_LENGTH, REDACTED, Secret
from .._version import __version__
from .._wire.protocol import ApiRequest, Attempt, Failure, Verdict, error_from_response, judge
from .limits import ClientLimits
from .retry import retry_delay

__all__ = ["Transport"]

logger = logging.getLogger("omni_edit")

USER_AGENT = f"omni-edit/{__version__} (+aiohttp)"


@attrs.frozen
class _Outcome:
    attempt: Attempt
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    exc: BaseException | None = None


class _KeyHeaders(CIMultiDict[str]):
    """Request headers that carry the key, in the type aiohttp merges without converting
    (about half the cost of a plain dict, on every request). ``repr``/``str`` show the
    header names only."""

    def __repr__(self) -> str:
        return "<headers " + ", ".join(f"{name}: ****" for name in self) + ">"

    __str__ = __repr__


class _EchoScrubber:
    """Replaces the key in a body by ``REDACTED``, for servers that echo it back; its
    ``repr`` does not show the key. A value too short to be a key is left alone: it
    would garble bodies instead (see ``_redact``)."""

    __slots__ = ("_key",)

    def __init__(self, api_key: Secret) -> None:
        key = api_key.reveal().encode()
        self._key = key if len(key) >= MIN_SECRET_LENGTH else None

    def __call__(self, body: bytes) -> bytes:
        key = self._key
        if key is not None and key in body:
            return body.replace(key, _REDACTED_BYTES)
        return body

    def __repr__(self) -> str:
        return "<scrubs the API key from answers>"


_REDACTED_BYTES = REDACTED.encode()


class Transport:
    """Sends ``ApiRequest``s to the API and returns ``(status, body)`` of a 2xx answer.

    Raises ``APIError`` subclasses for HTTP errors, ``APIConnectionError`` /
    ``APITimeoutError`` when no answer came, ``SubmissionUncertainError`` when a POST may
    have taken effect, ``MalformedResponseError`` for an absurdly large body.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Secret,
        limits: ClientLimits,
        timeout: float,
        max_retries: int,
        session: aiohttp.ClientSession | None = None,
        replay_keys: bool = True,
    ) -> None:
        self.base_url = base_url
        # A connect that times out raises ConnectionTimeoutError, which proves the request
        # never left; ``total`` bounds the whole exchange.
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout / 2)
        self._timeout_seconds = timeout
        self._max_retries = max_retries
        self._session = session
        self._owns_session = session is None
        self.limits = limits
        self._replay_keys = replay_keys
        self.requests_sent = 0
        self._closed = False
        # Built once: aiohttp copies them into each request, and only API requests (to
        # ``base_url``, redirects off) are sent with them.
        self._headers = _KeyHeaders(Authorization=f"Bearer {api_key.reveal()}")
        self._scrub = _EchoScrubber(api_key)
        self._json_headers = _KeyHeaders(self._headers)
        self._json_headers["Content-Type"] = "application/json"

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session, created on first use inside the running event loop."""
        if self._closed:
            raise RuntimeError("this omni_edit client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limits.max_concurrency),
                # No cookie is kept: none may travel from the API to a result host.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None and self._owns_session:
            await self._session.close()

    async def send(self, request: ApiRequest) -> tuple[int, bytes]:
        """Send with retries; return the 2xx status and body."""
        spent = 0
        attempt_no = 0
        url = self.base_url + request.path
        data: bytes | None = None
        if request.json is None:
            headers = self._headers
        else:
            data = json.dumps(request.json, separators=(",", ":")).encode()
            headers = self._json_headers
        key = request.idempotency_key
        if key is not None:
            headers = _KeyHeaders(headers)
            headers[IDEMPOTENCY_KEY_HEADER] = key
        # A keyed create may be replayed whatever became of an attempt: the gateway answers
        # a repeated key with the original task (docs/reliability.md#create-requests).
        replayable = request.idempotent or (key is not None and self._replay_keys)
        # Whether an attempt so far may have taken effect (a create whose answer was lost):
        # if so, however the last attempt ends, the outcome is unknown, not a failure.
        maybe_created = False
        limits = self.limits
        while True:
            if limits.pause.remaining():
                await limits.pause.wait()
            try:
                async with (
                    limits.slots,
                    self.session.request(
                        request.method,
                        url,
                        data=data,
                        headers=headers,
                        allow_redirects=False,
                        timeout=self._timeout,
                    ) as resp,
                ):
                    self.requests_sent += 1
                    status = resp.status
                    length = resp.content_length
                    # ``Content-Length`` counts the bytes on the wire: a compressed body
                    # is read in chunks after decoding, up to the bound, however small
                    # it was announced (a 300 KiB gzip can inflate to 300 MiB).
                    if (
                        length is not None
                        and length <= MAX_RESPONSE_BYTES
                        and CONTENT_ENCODING not in resp.headers
                    ):
                        body = await resp.read()
                    else:
                        body = await _read_bounded(resp)
                    body = self._scrub(body)
                    if 200 <= status < 300:
                        # The common case, before any bookkeeping.
                        if logger.isEnabledFor(logging.DEBUG):
                            logger.debug(
                                "%s %s -> %s (attempt %d)",
                                request.method,
                                request.path,
                                status,
                                attempt_no + 1,
                            )
                        if spent or limits.budget.tokens < limits.budget.capacity:
                            limits.budget.release(spent)
                        if key is not None and resp.headers.get(IDEMPOTENCY_REPLAYED_HEADER):
                            logger.info(
                                "create replayed with its Idempotency-Key: the gateway"
                                " returned the original task; nothing new was billed"
                            )
                        return status, body
                    outcome = _Outcome(Attempt(status=status), resp.headers, body)
            except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
                # Connecting failed (refused, DNS, TLS, connect timeout): nothing was sent.
                outcome = _Outcome(Attempt(failure=Failure.NOT_SENT), exc=exc)
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
                outcome = _Outcome(Attempt(failure=Failure.TIMEOUT), exc=exc)
            except aiohttp.ClientError as exc:
                outcome = _Outcome(Attempt(failure=Failure.LOST), exc=exc)
            logger.debug(
                "%s %s -> %s (attempt %d)",
                request.method,
                request.path,
                outcome.attempt.status or outcome.attempt.failure,
                attempt_no + 1,
            )
            error = self._error(outcome)
            attempt = outcome.attempt
            if isinstance(error, APIError) and error.code is not None:
                attempt = attrs.evolve(attempt, code=error.code)
            verdict = judge(attempt, idempotent=replayable)
            if not request.idempotent and judge(attempt, idempotent=False) is Verdict.UNCERTAIN:
                maybe_created = True
            if verdict is Verdict.RETRY and attempt_no < self._max_retries:
                delay = self._plan_retry(outcome, error, attempt_no)
                if delay is not None:
                    spent += delay[1]
                    await anyio.sleep(delay[0])
                    attempt_no += 1
                    continue
            if maybe_created:
                raise _uncertain(error, key, replayed=replayable, attempts=attempt_no + 1)
            if isinstance(error, IdempotencyConflictError):
                error.idempotency_key = key
            raise error

    def _plan_retry(
        self, outcome: _Outcome, error: APIError | APIConnectionError, attempt_no: int
    ) -> tuple[float, int] | None:
        """``(delay, tokens spent)`` for the next attempt, or ``None`` to give up."""
        retry_after = error.retry_after if isinstance(error, APIError) else None
        status = outcome.attempt.status
        throttled = status == 429 or (status == 503 and retry_after is not None)
        if throttled:
            # Throttling is paid in time, by the whole client, not from the budget: the
            # pause already slows everyone down.
            delay = retry_delay(attempt_no, retry_after)
            self.limits.pause.pause_for(delay)
            return 0.0, 0
        cost = self.limits.budget.acquire(after_timeout=outcome.attempt.failure is Failure.TIMEOUT)
        if not cost:
            logger.debug("retry budget exhausted; not retrying")
            return None
        return retry_delay(attempt_no, retry_after), cost

    def _error(self, outcome: _Outcome) -> APIError | APIConnectionError:
        status = outcome.attempt.status
        if status is not None:
            return error_from_response(status, outcome.headers, outcome.body)
        host = self.base_url
        if outcome.attempt.failure is Failure.TIMEOUT:
            err: APIConnectionError = APITimeoutError(
                f"no answer from {host} within {self._timeout_seconds:g} s"
            )
        else:
            err = APIConnectionError(f"could not reach {host}: {outcome.exc}")
        err.__cause__ = outcome.exc
        return err


def _uncertain(
    error: Exception, key: str | None, *, replayed: bool, attempts: int
) -> SubmissionUncertainError:
    if replayed and key is not None:
        message = (
            f"the create request was sent {attempts} time(s) with Idempotency-Key {key} and"
            f" no answer came back ({error}); a task may exist and be billed. Submitting"
            f" again with idempotency_key={key!r} returns it without paying twice"
        )
    else:
        message = (
            f"the create request was sent but its answer was lost ({error}); a task may"
            " have been created and billed, so it was not sent again"
            + (f" (its Idempotency-Key was {key})" if key is not None else "")
        )
    uncertain = SubmissionUncertainError(message, idempotency_key=key)
    uncertain.__cause__ = error
    return uncertain


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """A body of unknown, announced-excessive or encoded length, read as decoded up to
    the bound: aiohttp inflates a compressed body a chunk at a time as it is read, so
    no more than the bound and one chunk is ever held."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise MalformedResponseError(
                f"response body over {MAX_RESPONSE_BYTES} bytes: not an API answer",
                status=resp.status,
            )
        chunks.append(chunk)
    return b"".join(chunks)
