"""The client against the emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING

import aiohttp
import anyio
import pytest

import omni_edit as oe
from omni_edit._http import limits, retry
from omni_edit.emulator import Emulator, Fault

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-SECRET-0123456789"
CLIP = "https://media.example.com/clip.mp4"
PROMPT = "Make the lighting warmer and keep everything else unchanged"


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.2, 0.3), seed=1)


@pytest.fixture
async def client(make_client: ClientFactory, emu: Emulator) -> oe.Client:
    return await make_client(emu, KEY, max_retries=2)


def _posts(emu: Emulator) -> int:
    return sum(1 for r in emu.stats.requests if r.method == "POST")


def _gets(emu: Emulator) -> int:
    return sum(1 for r in emu.stats.requests if r.method == "GET")


async def test_submit_returns_a_pending_task_and_get_reads_it_back(
    client: oe.Client, emu: Emulator
) -> None:
    task = await client.submit(CLIP, PROMPT)
    assert task.status is oe.TaskStatus.PENDING
    assert task.id.startswith("task-unified-")
    assert task.model == "gemini-omni-flash-video-edit"
    assert task.created is not None
    assert task.created.tzinfo is not None
    assert task.usage is not None
    assert task.usage.credits_reserved
    assert emu.tasks[task.id].prompt == PROMPT
    again = await client.get(task.id)
    assert again.id == task.id


async def test_get_follows_the_task_to_completion(client: oe.Client) -> None:
    task = await client.submit(CLIP, PROMPT)
    with anyio.fail_after(5):
        while not task.is_terminal:
            await anyio.sleep(0.05)
            task = await client.get(task.id)
    assert task.status is oe.TaskStatus.COMPLETED
    assert task.progress == 100
    assert task.result_url is not None


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
    ],
)
async def test_each_http_error_raises_its_class_with_the_body_fields(
    emu: Emulator, status: int, cls: type[oe.APIError]
) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, max_retries=0) as c:
        emu.inject(Fault.status(status), method="GET")
        with pytest.raises(cls) as info:
            await c.get("task-unified-1-abcdefgh")
    err = info.value
    assert err.status == status
    assert err.type  # the documented body was parsed
    assert err.message
    if status in (429, 503):
        assert err.retry_after is not None


async def test_unknown_task_is_not_found(client: oe.Client) -> None:
    with pytest.raises(oe.NotFoundError):
        await client.get("task-unified-1-nosuchid")


async def test_wrong_key_is_an_authentication_error() -> None:
    async with (
        Emulator(api_keys={"right-key"}) as emu,
        oe.Client("wrong-key", base_url=emu.base_url) as c,
    ):
        with pytest.raises(oe.AuthenticationError):
            await c.submit(CLIP, PROMPT)
        assert emu.stats.creates == 0


async def test_server_side_400_names_the_param(client: oe.Client, emu: Emulator) -> None:
    emu.inject(
        Fault.status(
            400,
            body=b'{"error": {"code": "invalid_parameter",'
            b' "message": "video too long", "type": "invalid_request_error",'
            b' "param": "video_urls"}}',
        ),
        method="POST",
    )
    with pytest.raises(oe.BadRequestError) as info:
        await client.submit(CLIP, PROMPT)
    assert info.value.param == "video_urls"
    assert "video_urls" in str(info.value)


async def test_html_error_page_keeps_the_class_and_an_excerpt(
    client: oe.Client, emu: Emulator
) -> None:
    emu.inject(Fault.html(502), method="GET", times=10)
    with pytest.raises(oe.ServerError) as info:
        await client.get("task-unified-1-abcdefgh")
    assert info.value.status == 502
    assert "non-JSON" in info.value.message


async def test_empty_error_body_keeps_the_class(client: oe.Client, emu: Emulator) -> None:
    emu.inject(Fault.empty(404), method="GET")
    with pytest.raises(oe.NotFoundError, match="empty"):
        await client.get("task-unified-1-abcdefgh")


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"",
        b"[]",
        b'{"id": "task-unified-1-x"}',
        b'{"id": "task-unified-1-x", "status": "exploded"}',
        b'{"id": "task-unified-1-x", "status": "pending", "progress": "half"}',
    ],
)
async def test_malformed_success_body_is_a_malformed_response_error(
    client: oe.Client, emu: Emulator, body: bytes
) -> None:
    task = await client.submit(CLIP, PROMPT)
    emu.inject(Fault.malformed(body), method="GET")
    with pytest.raises(oe.MalformedResponseError):
        await client.get(task.id)


async def test_get_retries_transient_failures_and_succeeds(
    client: oe.Client, emu: Emulator
) -> None:
    task = await client.submit(CLIP, PROMPT)
    emu.inject(Fault.status(500), method="GET")
    emu.inject(Fault.drop_before(), method="GET")
    before = _gets(emu)
    assert (await client.get(task.id)).id == task.id
    assert _gets(emu) - before == 3


async def test_get_gives_up_after_max_retries(client: oe.Client, emu: Emulator) -> None:
    emu.inject(Fault.status(502), method="GET", times=10)
    with pytest.raises(oe.ServerError):
        await client.get("task-unified-1-abcdefgh")
    assert _gets(emu) == 3  # 1 try + max_retries=2


async def test_get_times_out_then_retries(emu: Emulator) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, timeout=0.2, max_retries=1) as c:
        task = await c.submit(CLIP, PROMPT)
        emu.inject(Fault.delay(1.0), method="GET", times=2)
        with pytest.raises(oe.APITimeoutError):
            await c.get(task.id)
        assert _gets(emu) == 2


async def test_an_empty_retry_budget_fails_fast(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "RETRY_BUDGET_CAPACITY", 5)
    emu.inject(Fault.status(500), method="GET", times=10)
    async with oe.Client(KEY, base_url=emu.base_url) as client:
        with pytest.raises(oe.ServerError):
            await client.get("task-unified-1-abcdefgh")
    assert _gets(emu) == 2  # one retry paid for, then the bucket was empty


async def test_a_429_pauses_every_request_of_the_client(emu: Emulator) -> None:
    async with oe.Client(KEY, base_url=emu.base_url) as c:
        task = await c.submit(CLIP, PROMPT)
        emu.inject(Fault.status(429, headers={"Retry-After": "0.5"}), method="GET")
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.get, task.id)  # gets the 429
            await anyio.sleep(0.1)
            for _ in range(5):  # sent during the pause: they must wait it out
                tg.start_soon(c.get, task.id)
        gets = sorted(r.time for r in emu.stats.requests if r.method == "GET")
    assert len(gets) == 7
    first, rest = gets[0], gets[1:]
    assert all(t - first >= 0.45 for t in rest), [round(t - first, 3) for t in rest]
    assert time.monotonic() - start < 3


async def test_in_flight_requests_never_exceed_max_concurrency() -> None:
    async with (
        Emulator(latency=0.05) as emu,
        oe.Client(KEY, base_url=emu.base_url, max_concurrency=3) as c,
    ):
        tasks = [await c.submit(CLIP, f"{PROMPT} {i}") for i in range(3)]
        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(c.get, tasks[i % 3].id)
        assert emu.stats.max_in_flight == 3


# --- Never double-bill ---------------------------------------------------------------------


async def test_a_lost_create_answer_is_replayed_and_returns_the_original_task(
    client: oe.Client, emu: Emulator
) -> None:
    emu.inject(Fault.drop_after(), method="POST")  # created, then the answer is lost
    task = await client.submit(CLIP, PROMPT)
    assert _posts(emu) == 2
    assert emu.stats.creates == 1
    assert emu.stats.replays == 1
    assert list(emu.tasks) == [task.id]


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_create_answered_with_a_server_error_is_replayed(
    client: oe.Client, emu: Emulator, status: int
) -> None:
    emu.inject(Fault.status(status), method="POST")
    task = await client.submit(CLIP, PROMPT)
    assert _posts(emu) == 2
    assert list(emu.tasks) == [task.id]


async def test_a_create_that_timed_out_is_replayed_not_billed_twice(emu: Emulator) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, timeout=0.2) as c:
        emu.inject(Fault.delay(1.0), method="POST")  # created, answered too late
        task = await c.submit(CLIP, PROMPT)
    assert list(emu.tasks) == [task.id]
    assert emu.stats.replays == 1


async def test_a_create_lost_every_time_is_uncertain_and_its_key_resolves_it(
    emu: Emulator,
) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, max_retries=2) as c:
        emu.inject(Fault.drop_after(), method="POST", times=3)
        with pytest.raises(oe.SubmissionUncertainError) as info:
            await c.submit(CLIP, PROMPT)
        key = info.value.idempotency_key
        assert key is not None
        assert key in str(info.value)
        assert isinstance(info.value.__cause__, oe.APIConnectionError)
        assert _posts(emu) == 3  # the first try and two replays
        task = await c.submit(CLIP, PROMPT, idempotency_key=key)
    assert list(emu.tasks) == [task.id]  # one task, whatever the number of sends
    assert emu.stats.replays == 3


async def test_the_same_key_for_another_request_is_a_conflict(
    client: oe.Client, emu: Emulator
) -> None:
    key = "my-own-key-0123456789"
    first = await client.submit(CLIP, PROMPT, idempotency_key=key)
    again = await client.submit(CLIP, PROMPT, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(oe.IdempotencyConflictError) as info:
        await client.submit(CLIP, "Something else entirely", idempotency_key=key)
    assert info.value.idempotency_key == key
    assert info.value.status == 409
    assert isinstance(info.value, oe.APIError)
    assert list(emu.tasks) == [first.id]


async def test_paid_outcome_unknown_waits_and_replays_the_key(
    client: oe.Client, emu: Emulator
) -> None:
    busy = {
        "error": {
            "code": "paid_outcome_unknown",
            "message": "The earlier request with this key is still being processed.",
            "type": "api_error",
        }
    }
    emu.inject(Fault.status(409, body=busy, headers={"Retry-After": "0"}), method="POST")
    task = await client.submit(CLIP, PROMPT)
    assert _posts(emu) == 2
    assert list(emu.tasks) == [task.id]


@pytest.mark.parametrize(
    "key", ["short", "x" * 97, "has space 0123456789", "ünïcode-0123456789", 12345678901234567]
)
async def test_a_bad_idempotency_key_is_refused_before_sending(
    client: oe.Client, emu: Emulator, key: object
) -> None:
    with pytest.raises(oe.ValidationError) as info:
        await client.submit(CLIP, PROMPT, idempotency_key=key)  # type: ignore[arg-type]
    assert info.value.field == "idempotency_key"
    assert not emu.stats.requests


# With replays off (a deployment that ignores keys), the conservative rule holds.


async def test_without_replays_a_lost_answer_is_uncertain_not_resent(emu: Emulator) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, replay_creates=False) as c:
        emu.inject(Fault.drop_after(), method="POST")
        with pytest.raises(oe.SubmissionUncertainError) as info:
            await c.submit(CLIP, PROMPT)
    assert info.value.video_url == CLIP
    assert info.value.idempotency_key is not None  # sent all the same: harmless
    assert isinstance(info.value.__cause__, oe.APIConnectionError)
    assert _posts(emu) == 1
    assert emu.stats.creates == 1


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_without_replays_a_server_error_is_uncertain_not_resent(
    emu: Emulator, status: int
) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, replay_creates=False) as c:
        emu.inject(Fault.status(status), method="POST")
        with pytest.raises(oe.SubmissionUncertainError):
            await c.submit(CLIP, PROMPT)
    assert _posts(emu) == 1


async def test_without_replays_a_timed_out_create_is_uncertain_not_resent(
    emu: Emulator,
) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, timeout=0.2, replay_creates=False) as c:
        emu.inject(Fault.delay(1.0), method="POST")
        with pytest.raises(oe.SubmissionUncertainError) as info:
            await c.submit(CLIP, PROMPT)
    assert isinstance(info.value.__cause__, oe.APITimeoutError)
    assert _posts(emu) == 1
    assert emu.stats.creates == 1


async def test_replays_are_what_protect_a_deployment_that_honours_keys() -> None:
    # The emulator playing a deployment that ignores keys: a replay there bills twice,
    # which is why replay_creates=False exists.
    async with (
        Emulator(idempotency_keys=False) as emu,
        oe.Client(KEY, base_url=emu.base_url) as c,
    ):
        emu.inject(Fault.drop_after(), method="POST")
        await c.submit(CLIP, PROMPT)
    assert emu.stats.creates == 2


@pytest.mark.parametrize("status", [429, 503])
async def test_post_refused_with_429_or_503_is_retried(
    client: oe.Client, emu: Emulator, status: int
) -> None:
    emu.inject(Fault.status(status, headers={"Retry-After": "0"}), method="POST")
    task = await client.submit(CLIP, PROMPT)
    assert _posts(emu) == 2
    assert emu.stats.creates == 1
    assert task.id in emu.tasks


async def test_post_that_could_not_connect_is_retried_then_fails_certainly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with oe.Client(KEY, base_url=f"http://127.0.0.1:{port}", max_retries=1) as c:
        with pytest.raises(oe.APIConnectionError) as info:
            await c.submit(CLIP, PROMPT)
    assert not isinstance(info.value, oe.SubmissionUncertainError)


async def test_no_input_is_created_twice_under_random_faults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retry, "BACKOFF_BASE_SECONDS", 0.02)  # the faults, not the waits
    # Few 429s: each pauses the whole client for a second, which tests nothing here.
    async with (
        Emulator(rate_5xx=0.25, rate_429=0.03, drop_rate=0.25, seed=7) as emu,
        oe.Client(KEY, base_url=emu.base_url, max_retries=6) as c,
    ):
        outcomes: dict[str, str] = {}

        async def one(i: int) -> None:
            try:
                await c.submit(CLIP, f"prompt {i}")
                outcomes[f"prompt {i}"] = "ok"
            except oe.SubmissionUncertainError:
                outcomes[f"prompt {i}"] = "uncertain"
            except oe.OmniEditError:
                outcomes[f"prompt {i}"] = "failed"

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
        created = Counter(t.prompt for t in emu.tasks.values())
    assert max(created.values()) == 1
    for prompt, outcome in outcomes.items():
        if outcome == "ok":
            assert created[prompt] == 1
        if outcome == "failed":
            assert created[prompt] == 0
    # Replays with the key resolve lost answers: almost every input ends created once.
    assert list(outcomes.values()).count("ok") >= 36, outcomes


# --- Validation: nothing is sent -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"video_url": "ftp://x/clip.mp4"}, "video_url"),
        # A local clip, and no storage configured to upload it to.
        ({"video_url": "clip.mp4"}, "storage"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"callback_url": "http://hooks.example.com/cb"}, "callback_url"),
        ({"callback_url": "https://10.0.0.7/cb"}, "callback_url"),
        ({"callback_url": "https://[fe80::1]/cb"}, "callback_url"),
        ({"callback_url": "https://example.com/" + "x" * 2048}, "callback_url"),
    ],
)
async def test_invalid_input_is_rejected_before_anything_is_sent(
    client: oe.Client, emu: Emulator, kwargs: dict[str, str], field: str
) -> None:
    args = {"video_url": CLIP, "prompt": PROMPT, **kwargs}
    with pytest.raises(oe.ValidationError) as info:
        await client.submit(
            args.pop("video_url"), args.pop("prompt"), callback_url=args.pop("callback_url", None)
        )
    assert info.value.field == field
    assert emu.stats.requests == []


async def test_a_lone_surrogate_is_refused_before_anything_is_sent(
    client: oe.Client, emu: Emulator
) -> None:
    with pytest.raises(oe.ValidationError, match="surrogate") as info:
        await client.submit(CLIP, "warmer \ud800")
    assert info.value.field == "prompt"
    assert emu.stats.requests == []


async def test_a_lone_surrogate_in_one_input_of_a_batch_fails_that_input_only(
    make_client: ClientFactory, emu: Emulator
) -> None:
    fast = oe.PollPolicy(min_interval=0.02, max_interval=0.2)
    client = await make_client(emu, KEY, poll=fast)
    inputs = [(CLIP, PROMPT), (CLIP, "cooler \ud800 tones"), (CLIP, PROMPT + ".")]
    with anyio.fail_after(10):
        outcomes = {o.index: o async for o in client.edit_many(inputs)}
    assert sorted(outcomes) == [0, 1, 2]
    assert outcomes[0].ok
    assert outcomes[2].ok
    assert isinstance(outcomes[1].error, oe.ValidationError)
    assert outcomes[1].task is None
    assert emu.stats.creates == 2


async def test_malformed_task_id_is_rejected_before_anything_is_sent(
    client: oe.Client, emu: Emulator
) -> None:
    with pytest.raises(oe.ValidationError):
        await client.get("../v1/videos/generations")
    assert emu.stats.requests == []


# --- Configuration and secrets --------------------------------------------------------------


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNI_EDIT_API_KEY", raising=False)
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    with pytest.raises(oe.ValidationError, match="OMNI_EDIT_API_KEY"):
        oe.Client()


async def test_key_and_base_url_come_from_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNI_EDIT_API_KEY", raising=False)
    monkeypatch.setenv("EVOLINK_API_KEY", KEY)
    monkeypatch.setenv("OMNI_EDIT_BASE_URL", emu.base_url)
    async with oe.Client() as c:
        assert c.base_url == emu.base_url
        await c.submit(CLIP, PROMPT)
    monkeypatch.setenv("OMNI_EDIT_API_KEY", "first-wins")
    assert oe.Client().base_url == emu.base_url


def test_plain_http_base_url_is_refused_off_loopback() -> None:
    with pytest.raises(oe.ValidationError, match="unencrypted"):
        oe.Client(KEY, base_url="http://api.evolink.ai")


async def test_the_key_never_appears_in_reprs_errors_or_debug_logs(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with oe.Client(KEY, base_url=emu.base_url, max_retries=1) as c:
        task = await c.submit(CLIP, PROMPT)
        await c.get(task.id)
        for fault in (Fault.status(401), Fault.drop_after(), Fault.html(500)):
            emu.inject(fault, times=2)
            try:
                await c.submit(CLIP, PROMPT)
            except oe.OmniEditError as exc:
                errors.append(exc)
        texts = [repr(c), str(c), repr(task), caplog.text]
        texts += [f"{e!r} {e} {e.__cause__!r}" for e in errors]
        # The header maps the transport keeps for every request.
        texts += [repr(vars(c._transport)), str(c._transport._json_headers)]
    assert len(errors) == 3
    assert "POST /v1/videos/generations -> 200" in caplog.text
    for text in texts:
        assert KEY not in text
    assert all(r.had_authorization for r in emu.stats.requests)


async def test_a_caller_owned_session_is_used_and_left_open(emu: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with oe.Client(KEY, base_url=emu.base_url, session=session) as c:
            await c.submit(CLIP, PROMPT)
        assert not session.closed
    assert emu.stats.creates == 1


def test_a_client_used_from_a_second_event_loop_says_it_belongs_to_one() -> None:
    made: list[tuple[oe.Client, str]] = []

    async def first_run() -> None:
        # The client is left open, as a script calling asyncio.run twice leaves it; the
        # session is the test's own only so that nothing stays open after the test.
        async with Emulator(processing_time=(0.0, 0.0)) as emu, aiohttp.ClientSession() as s:
            client = oe.Client(KEY, base_url=emu.base_url, session=s)
            task = await client.submit(CLIP, PROMPT)
            made.append((client, task.id))

    asyncio.run(first_run())
    client, task_id = made[0]

    async def second_run() -> None:
        await client.get(task_id)

    async def second_batch() -> None:
        async for _ in client.edit_many([(CLIP, PROMPT)]):
            pass

    for second in (second_run, second_batch):
        with pytest.raises(oe.EventLoopError, match="one client per event loop") as caught:
            asyncio.run(second())
        assert "closed" in str(caught.value)
