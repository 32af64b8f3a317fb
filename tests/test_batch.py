"""edit_many against the emulator: one outcome per input, nothing created twice."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import omni_edit as oe
from omni_edit._batch import edit_many as _batch
from omni_edit._http import download, retry
from omni_edit.emulator import Emulator, Fault

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-batch"
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.2)


def _inputs(n: int) -> list[tuple[str, str]]:
    return [(f"https://media.example.com/c{i}.mp4", f"prompt {i}") for i in range(n)]


def _created(emu: Emulator) -> Counter[str]:
    return Counter(t.prompt for t in emu.tasks.values())


def _sdk_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks started since ``before``, leaving out the emulator's own server side."""

    def ours(task: asyncio.Task[object]) -> bool:
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code else ""
        return "web_protocol" not in where and "/emulator/" not in where

    return {t for t in asyncio.all_tasks() - before if ours(t)}


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.05, 0.2), estimated_time=0.1, seed=4)


@pytest.fixture
async def client(make_client: ClientFactory, emu: Emulator) -> oe.Client:
    return await make_client(emu, KEY, poll=FAST, max_concurrency=4)


@pytest.fixture(autouse=True)
def quick_task_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batch, "TASK_RETRY_BASE", 0.01)


async def _collect(it: AsyncIterator[oe.EditOutcome]) -> list[oe.EditOutcome]:
    return [o async for o in it]


async def test_every_input_yields_one_completed_outcome(client: oe.Client, emu: Emulator) -> None:
    outcomes = await _collect(client.edit_many(_inputs(30), concurrency=8))
    assert sorted(o.index for o in outcomes) == list(range(30))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert all(o.task is not None and o.task.result_url for o in outcomes)
    assert max(_created(emu).values()) == 1
    assert len(emu.tasks) == 30
    assert emu.stats.max_in_flight <= 4


async def test_outcomes_stream_in_completion_order() -> None:
    # Tasks that would run for a minute, finished by hand in reverse input order.
    async with (
        Emulator(processing_time=(60, 60), estimated_time=0.1) as emu,
        oe.Client(KEY, base_url=emu.base_url, poll=FAST) as c,
    ):
        order: list[int] = []

        async def consume() -> None:
            async for outcome in c.edit_many(_inputs(4), concurrency=4):
                order.append(outcome.index)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(5):
                while len(emu.tasks) < 4:
                    await anyio.sleep(0.01)
            by_prompt = {t.prompt: t.id for t in emu.tasks.values()}
            for i in reversed(range(4)):
                emu.complete(by_prompt[f"prompt {i}"])
                await anyio.sleep(0.3)
    assert order == [3, 2, 1, 0]


async def test_faults_never_create_an_input_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BACKOFF_BASE_SECONDS", 0.02)  # the faults, not the waits
    async with (
        Emulator(
            processing_time=(0.05, 0.15),
            estimated_time=0.1,
            rate_5xx=0.1,
            rate_429=0.05,
            drop_rate=0.05,
            failure_rate=0.1,
            failure_codes=("service_error", "content_policy_violation"),
            seed=21,
        ) as emu,
        oe.Client(KEY, base_url=emu.base_url, poll=FAST, max_concurrency=4, max_retries=6) as c,
    ):
        outcomes = await _collect(c.edit_many(_inputs(40), concurrency=10))
        created = _created(emu)
        tasks_by_prompt: dict[str, list[str]] = {}
        for task in sorted(emu.tasks.values(), key=lambda t: t.created):
            tasks_by_prompt.setdefault(task.prompt, []).append(task.id)
        earlier_failures = {
            p: [(emu.tasks[i].status, emu.tasks[i].error_code) for i in ids[:-1]]
            for p, ids in tasks_by_prompt.items()
        }
    assert sorted(o.index for o in outcomes) == list(range(40))
    assert emu.stats.max_in_flight <= 4
    # An input is created again only after its task failed with a retryable code.
    for prompt, earlier in earlier_failures.items():
        assert all(status == "failed" and code == "service_error" for status, code in earlier), (
            prompt,
            created[prompt],
            earlier,
        )
    assert sum(o.ok for o in outcomes) >= 20


async def test_retryable_task_failures_are_resubmitted_a_few_times() -> None:
    async with (
        Emulator(processing_time=(0.02, 0.05), failure_rate=1.0, seed=2) as emu,
        oe.Client(KEY, base_url=emu.base_url, poll=FAST) as c,
    ):
        [outcome] = await _collect(c.edit_many(_inputs(1), task_retries=2))
    assert isinstance(outcome.error, oe.TaskFailedError)
    assert outcome.error.code == "service_error"
    assert _created(emu)["prompt 0"] == 3  # the first try and two retries


async def test_client_errors_of_a_task_are_not_resubmitted() -> None:
    async with (
        Emulator(
            processing_time=(0.02, 0.05),
            failure_rate=1.0,
            failure_codes=("content_policy_violation",),
        ) as emu,
        oe.Client(KEY, base_url=emu.base_url, poll=FAST) as c,
    ):
        [outcome] = await _collect(c.edit_many(_inputs(1)))
    assert isinstance(outcome.error, oe.TaskFailedError)
    assert _created(emu)["prompt 0"] == 1


async def test_bad_inputs_are_outcomes_and_the_rest_go_on(client: oe.Client) -> None:
    inputs: list[object] = [
        ("https://m.example/a.mp4", "ok"),
        ("https://m.example/b.mp4", ""),
        ("ftp://m.example/c.mp4", "bad scheme"),
        {"video_url": "https://m.example/d.mp4", "prompt": "dict ok"},
        {"video": "https://m.example/e.mp4"},
        42,
        oe.EditRequest("https://m.example/f.mp4", "request ok"),
    ]
    # Wrong types on purpose: edit_many must turn them into outcomes, not raise.
    outcomes = {o.index: o for o in await _collect(client.edit_many(inputs))}  # type: ignore[arg-type]
    assert {i for i, o in outcomes.items() if o.ok} == {0, 3, 6}
    for i in (1, 2, 4, 5):
        assert isinstance(outcomes[i].error, oe.ValidationError)


async def test_download_dir_gets_each_result_under_a_stable_name(
    client: oe.Client, tmp_path: Path
) -> None:
    outcomes = await _collect(client.edit_many(_inputs(5), download_dir=tmp_path))
    paths = {o.index: o.path for o in outcomes}
    assert all(p is not None and p.exists() and p.parent == tmp_path for p in paths.values())
    again = await _collect(client.edit_many(_inputs(5), download_dir=tmp_path / "2"))
    assert {o.index: o.path.name for o in again if o.path} == {
        i: p.name for i, p in paths.items() if p
    }


async def test_inputs_are_read_lazily(client: oe.Client) -> None:
    pulled: list[int] = []

    def endless() -> Iterator[tuple[str, str]]:
        i = 0
        while True:
            pulled.append(i)
            yield (f"https://m.example/{i}.mp4", f"p{i}")
            i += 1

    async with contextlib.aclosing(client.edit_many(endless(), concurrency=3)) as it:
        async for outcome in it:
            assert outcome.ok
            break
    # Three open edits, a few outcomes buffered for the consumer, no more.
    assert len(pulled) <= 3 + 3 + 2


async def test_breaking_out_early_leaves_no_pending_task(client: oe.Client, emu: Emulator) -> None:
    before = asyncio.all_tasks()
    async for _ in client.edit_many(_inputs(50), concurrency=5):
        break
    with anyio.fail_after(2):
        while _sdk_tasks(before):
            await asyncio.sleep(0.01)
    # No more requests once the iterator is gone.
    count = len(emu.stats.requests)
    await anyio.sleep(0.3)
    assert len(emu.stats.requests) == count


async def test_cancelling_the_consumer_stops_everything(client: oe.Client, emu: Emulator) -> None:
    before = asyncio.all_tasks()
    seen: list[oe.EditOutcome] = []
    with anyio.move_on_after(0.15):
        async with contextlib.aclosing(client.edit_many(_inputs(200), concurrency=5)) as it:
            async for outcome in it:
                seen.append(outcome)
    with anyio.fail_after(1):  # the scheduler's runner notices it is idle within a tick
        while _sdk_tasks(before):
            await asyncio.sleep(0.01)
    assert len(seen) < 200


async def test_a_consumer_that_falls_behind_at_the_end_still_sees_the_end(
    client: oe.Client,
) -> None:
    """Regression: with every outcome queued before the consumer came back, the end marker
    found the queue full, was dropped, and the iteration never ended."""
    async with contextlib.aclosing(client.edit_many(_inputs(3), concurrency=1)) as it:
        first = await anext(it)
        await anyio.sleep(1.0)  # the other two finish and queue up meanwhile
        with anyio.fail_after(5):
            rest = [outcome async for outcome in it]
    assert first.ok
    assert sorted(o.index for o in [first, *rest]) == [0, 1, 2]


async def test_on_progress_hears_every_change(client: oe.Client) -> None:
    seen: list[oe.BatchProgress] = []
    outcomes = await _collect(client.edit_many(_inputs(6), on_progress=seen.append))
    assert len(outcomes) == 6
    assert seen[-1].done == 6
    assert seen[-1].failed == 0
    assert seen[-1].running == 0
    assert seen[-1].submitted == 6
    assert seen[-1].credits_reserved > 0
    assert max(p.running for p in seen) >= 1
    assert len(set(seen)) == len(seen)


async def test_an_input_iterator_that_raises_reaches_the_consumer(client: oe.Client) -> None:
    def broken() -> Iterator[tuple[str, str]]:
        yield ("https://m.example/a.mp4", "a")
        raise RuntimeError("manifest unreadable")

    seen: list[oe.EditOutcome] = []

    async def consume() -> None:
        async for outcome in client.edit_many(broken()):
            seen.append(outcome)

    with pytest.raises(RuntimeError, match="manifest unreadable"):
        await consume()
    # The edit opened before the inputs broke was billed: it finished and reported first.
    assert [(o.index, o.ok) for o in seen] == [(0, True)]


async def test_a_slow_consumer_holds_the_workers_back(client: oe.Client, emu: Emulator) -> None:
    async with contextlib.aclosing(client.edit_many(_inputs(12), concurrency=2)) as it:
        first = await anext(it)
        await anyio.sleep(0.3)  # every worker finishes and waits to hand its outcome over
        created = emu.stats.creates
        async for _ in it:
            pass
    assert first.ok
    # Two workers, two outcomes queued, one taken: nowhere near all 12 ran ahead.
    assert created <= 2 + 2 + 1


async def test_async_iterable_inputs_are_accepted(client: oe.Client) -> None:
    async def source() -> AsyncIterator[tuple[str, str]]:
        for item in _inputs(4):
            await anyio.lowlevel.checkpoint()
            yield item

    outcomes = await _collect(client.edit_many(source()))
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3]


async def test_auth_failure_stops_new_submissions() -> None:
    async with (
        Emulator(api_keys={"the-right-key"}) as emu,
        oe.Client("a-wrong-key", base_url=emu.base_url, poll=FAST) as c,
    ):
        outcomes = await _collect(c.edit_many(_inputs(100), concurrency=4))
        posts = sum(1 for r in emu.stats.requests if r.method == "POST")
    assert len(outcomes) == 100
    assert all(isinstance(o.error, oe.AuthenticationError) for o in outcomes)
    assert posts <= 4


# --- Journal --------------------------------------------------------------------------------


def _rows(journal: Path, columns: str) -> list[tuple[Any, ...]]:
    """The journal's rows, read as any SQLite reader would."""
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        return conn.execute(f"SELECT {columns} FROM items ORDER BY digest, occurrence").fetchall()


async def test_a_rerun_with_the_journal_skips_what_is_done(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.sqlite"
    first = await _collect(client.edit_many(_inputs(8), journal=journal, download_dir=tmp_path))
    assert all(o.ok for o in first)
    requests_before = len(emu.stats.requests)
    again = await _collect(client.edit_many(_inputs(8), journal=journal, download_dir=tmp_path))
    assert all(o.ok for o in again)
    assert {o.index: o.path for o in again} == {o.index: o.path for o in first}
    assert len(emu.stats.requests) == requests_before  # nothing sent at all
    # What each input was charged in the first run is still reported.
    charged = {o.index: o.task.usage.credits_reserved for o in first if o.task and o.task.usage}
    assert len(charged) == 8
    assert {o.index: o.task.usage.credits_reserved for o in again if o.task and o.task.usage} == (
        charged
    )


async def test_a_rerun_resumes_waiting_on_submitted_inputs(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.sqlite"
    async with contextlib.aclosing(
        client.edit_many(_inputs(20), journal=journal, concurrency=20)
    ) as it:
        async for _ in it:
            break  # the other inputs are submitted and left waiting
    rerun = await _collect(client.edit_many(_inputs(20), journal=journal, concurrency=20))
    assert all(o.ok for o in rerun)
    assert max(_created(emu).values()) == 1
    assert len(emu.tasks) == 20


async def test_a_lost_create_answer_in_a_batch_is_replayed_not_billed_twice(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    emu.inject(Fault.drop_after(), method="POST")
    [outcome] = await _collect(client.edit_many(_inputs(1), journal=tmp_path / "j.sqlite"))
    assert outcome.ok, outcome.error
    assert _created(emu)["prompt 0"] == 1


async def test_a_batch_keeps_replaying_a_key_whose_sends_all_went_unanswered(
    make_client: ClientFactory, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "BACKOFF_BASE_SECONDS", 0.01)
    client = await make_client(emu, KEY, poll=FAST, max_retries=1)
    emu.inject(Fault.drop_after(), method="POST", times=6)  # three submits' worth
    [outcome] = await _collect(client.edit_many(_inputs(1)))
    assert outcome.ok, outcome.error
    assert _created(emu)["prompt 0"] == 1
    assert emu.stats.replays == 6


async def test_an_uncertain_create_is_replayed_with_its_recorded_key_on_rerun(
    make_client: ClientFactory,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retry, "BACKOFF_BASE_SECONDS", 0.01)
    journal = tmp_path / "run.sqlite"
    client = await make_client(emu, KEY, poll=FAST, max_retries=1)
    sends = 2 * (_batch._SUBMIT_RETRIES + 1)  # every send and replay of the first run
    emu.inject(Fault.drop_after(), method="POST", times=sends)
    [outcome] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert isinstance(outcome.error, oe.SubmissionUncertainError)
    key = outcome.error.idempotency_key
    [(state, recorded)] = _rows(journal, "state, idempotency_key")
    assert state == "uncertain"
    assert recorded == key  # recorded before the first send

    [again] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert again.ok, again.error
    assert _created(emu)["prompt 0"] == 1  # the replay found the task the lost send made
    assert emu.stats.replays == sends


async def test_refused_replays_of_an_earlier_runs_key_leave_it_uncertain_not_failed(
    make_client: ClientFactory,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retry, "BACKOFF_BASE_SECONDS", 0.01)
    journal = tmp_path / "run.sqlite"
    client = await make_client(emu, KEY, poll=FAST, max_retries=1)
    sends = 2 * (_batch._SUBMIT_RETRIES + 1)
    emu.inject(Fault.drop_after(), method="POST", times=sends)  # made, answer lost
    [first] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert isinstance(first.error, oe.SubmissionUncertainError)

    # The next run's replays are all refused: that says nothing of the first run's send.
    refused = Fault.status(429, headers={"Retry-After": "0"})
    emu.inject(refused, method="POST", times=sends)
    [second] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert isinstance(second.error, oe.SubmissionUncertainError), second.error

    [third] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert third.ok, third.error
    assert _created(emu)["prompt 0"] == 1  # the key, kept, found the first run's task


async def test_without_replays_an_uncertain_input_is_resubmitted_only_when_asked(
    make_client: ClientFactory, emu: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.sqlite"
    client = await make_client(emu, KEY, poll=FAST, replay_creates=False)
    emu.inject(Fault.drop_after(), method="POST")
    [outcome] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert isinstance(outcome.error, oe.SubmissionUncertainError)

    [again] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert isinstance(again.error, oe.SubmissionUncertainError)
    assert _created(emu)["prompt 0"] == 1

    [forced] = await _collect(
        client.edit_many(_inputs(1), journal=journal, resubmit_uncertain=True)
    )
    assert forced.ok
    assert _created(emu)["prompt 0"] == 2


async def test_a_batch_with_a_third_of_create_answers_lost_completes_with_no_duplicate(
    make_emulator: EmulatorFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(
        processing_time=(0.02, 0.1), estimated_time=0.05, lost_create_rate=0.3, seed=12
    )
    client = await make_client(emu, KEY, poll=FAST, max_concurrency=8)
    outcomes = await _collect(
        client.edit_many(_inputs(100), concurrency=32, journal=tmp_path / "run.sqlite")
    )
    assert len(outcomes) == 100
    assert [o.error for o in outcomes if not o.ok] == []
    created = _created(emu)
    assert len(created) == 100
    assert max(created.values()) == 1
    assert emu.stats.replays >= 20  # about 30 of the 100 first sends went unanswered


async def test_an_edited_input_list_submits_only_what_is_new_or_fixed(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    """The journal keys inputs by what they are: a row inserted at the top, rows
    reordered, one deleted and one prompt fixed resubmit only the new and fixed rows."""
    journal = tmp_path / "run.sqlite"
    first = _inputs(30)
    assert all(o.ok for o in await _collect(client.edit_many(first, journal=journal)))
    assert len(emu.tasks) == 30
    edited = list(reversed(first))  # reordered
    del edited[5]  # one deleted
    edited[10] = (edited[10][0], edited[10][1] + " (fixed)")  # one prompt fixed
    fixed = edited[10][1]
    edited.insert(0, ("https://media.example.com/new.mp4", "a new row"))  # inserted on top
    outcomes = await _collect(client.edit_many(edited, journal=journal))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert len(outcomes) == 30
    assert len(emu.tasks) == 32  # the new row and the fixed row, nothing else
    fresh = {o.request.prompt for o in outcomes if not o.resumed and o.request}
    assert fresh == {"a new row", fixed}
    created = _created(emu)
    assert created["a new row"] == 1
    assert created[fixed] == 1
    assert max(created.values()) == 1


async def test_identical_inputs_are_takes_with_their_own_tasks_and_files(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.sqlite"
    out = tmp_path / "out"
    three = [("https://media.example.com/same.mp4", "warmer")] * 3
    outcomes = await _collect(client.edit_many(three, journal=journal, download_dir=out))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert len(emu.tasks) == 3
    assert sorted(o.occurrence for o in outcomes) == [0, 1, 2]
    paths = {o.path for o in outcomes}
    assert len(paths) == 3
    assert len({p.read_bytes() for p in paths if p}) == 3  # each take its own bytes
    assert {o.task.id for o in outcomes if o.task} == set(emu.tasks)
    # A rerun finds all three takes done, each in its own file.
    again = await _collect(client.edit_many(three, journal=journal, download_dir=out))
    assert all(o.resumed for o in again)
    assert {o.path for o in again} == paths
    assert len(emu.tasks) == 3
    # And a fourth take, asked for later, is the only new one.
    four = await _collect(client.edit_many(three + three[:1], journal=journal, download_dir=out))
    assert len(emu.tasks) == 4
    assert [o.occurrence for o in four if not o.resumed] == [3]


async def test_identical_inputs_without_a_journal_still_get_their_own_files(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    three = [("https://media.example.com/same.mp4", "warmer")] * 3
    outcomes = await _collect(client.edit_many(three, download_dir=tmp_path))
    assert len({o.path for o in outcomes}) == 3
    assert len(list(tmp_path.glob("*.mp4"))) == 3


async def test_a_fixed_bad_input_is_submitted_on_rerun(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.sqlite"
    bad = [("https://m.example/a.mp4", "  "), *_inputs(2)[1:]]
    first = {o.index: o async for o in client.edit_many(bad, journal=journal)}
    assert isinstance(first[0].error, oe.ValidationError)
    fixed = [("https://m.example/a.mp4", "now a real prompt"), *_inputs(2)[1:]]
    second = {o.index: o async for o in client.edit_many(fixed, journal=journal)}
    assert second[0].ok
    assert second[1].ok
    assert len(emu.tasks) == 2


async def test_a_failed_download_is_resumed_from_its_task_on_rerun(
    client: oe.Client, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "run.sqlite"
    monkeypatch.setattr(download, "BACKOFF_CAP_SECONDS", 0.01)
    emu.inject_result(Fault.status(500), times=6)
    [first] = await _collect(client.edit_many(_inputs(1), journal=journal, download_dir=tmp_path))
    assert isinstance(first.error, oe.DownloadError)
    [second] = await _collect(client.edit_many(_inputs(1), journal=journal, download_dir=tmp_path))
    assert second.ok
    assert second.path is not None
    assert second.path.exists()
    assert len(emu.tasks) == 1  # the same task, downloaded again: nothing billed twice


async def test_a_cancel_mid_create_still_records_the_task(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.sqlite"
    emu.inject(Fault.delay(0.4), method="POST")  # the create is in flight when we cancel
    with anyio.move_on_after(0.15):
        async with contextlib.aclosing(client.edit_many(_inputs(1), journal=journal)) as it:
            async for _ in it:
                pass
    [(state,)] = _rows(journal, "state")
    assert state == "submitted"  # not "submitting": the answer was kept
    [again] = await _collect(client.edit_many(_inputs(1), journal=journal))
    assert again.ok
    assert len(emu.tasks) == 1


async def test_an_on_progress_that_raises_ends_the_batch_with_its_own_error(
    client: oe.Client,
) -> None:
    before = asyncio.all_tasks()

    def on_progress(progress: oe.BatchProgress) -> None:
        if progress.done:
            raise ValueError("the progress display broke")

    with pytest.raises(ValueError, match="the progress display broke"):
        await _collect(client.edit_many(_inputs(6), concurrency=3, on_progress=on_progress))
    with anyio.fail_after(2):  # the other workers were cancelled, nothing is left
        while _sdk_tasks(before):
            await asyncio.sleep(0.01)


async def test_of_two_workers_failing_at_once_the_first_error_is_raised() -> None:
    async def fail(message: str) -> None:
        raise ValueError(message)

    error: Exception | None = None
    try:
        async with anyio.create_task_group() as workers:
            workers.start_soon(fail, "first")
            workers.start_soon(fail, "second")  # fails in the same turn of the loop
    except Exception as exc:
        error = _batch._unwrap(exc)
    assert isinstance(error, ValueError)
    assert str(error) == "first"


async def test_a_lone_surrogate_fails_its_input_only_even_with_a_journal(
    client: oe.Client, emu: Emulator, tmp_path: Path
) -> None:
    inputs = [*_inputs(2), ("https://media.example.com/x.mp4", "bad \ud800 text")]
    outcomes = {o.index: o async for o in client.edit_many(inputs, journal=tmp_path / "j")}
    assert outcomes[0].ok
    assert outcomes[1].ok
    assert isinstance(outcomes[2].error, oe.ValidationError)
    assert len(emu.tasks) == 2


async def test_a_cancelled_batch_waits_for_a_create_in_flight_only_so_long(
    make_client: ClientFactory,
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_batch, "CANCEL_GRACE_SECONDS", 0.3)
    monkeypatch.setattr(retry, "BACKOFF_BASE_SECONDS", 0.01)
    client = await make_client(emu, KEY, poll=FAST, timeout=0.3)
    journal = tmp_path / "run.sqlite"
    emu.inject(Fault.delay(30), method="POST", times=100)  # no create is ever answered
    started = anyio.current_time()
    with anyio.move_on_after(0.2):
        async with contextlib.aclosing(client.edit_many(_inputs(1), journal=journal)) as it:
            async for _ in it:
                pass
    # The create kept being sent (replayed with its key) until the grace ran out.
    assert anyio.current_time() - started < 0.2 + 0.3 + 0.3 + 1.0
    [(state, key)] = _rows(journal, "state, idempotency_key")
    assert state == "submitting"  # a rerun replays this key: nothing billed twice
    assert key
