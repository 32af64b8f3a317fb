"""What the gateway offers beyond the docs page (docs/api.md#gateway-extras): the
balance, the task list, request ids, what a task was charged, the finer 402/403 codes
and ``Retry-After`` as an HTTP date; through the Python API and the command line.

The command line runs in-process (``main`` in a worker thread, against the emulator on
the test's loop): the same code as ``omni-edit``, without a Python start per command.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import anyio
import pytest

import omni_edit as oe
from omni_edit._cli import main
from omni_edit.emulator import Emulator, Fault

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-extras-test-SECRET"


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(30.0, 30.0), estimated_time=30, seed=3)


# --- Balance and billing -----------------------------------------------------------------


async def test_the_balance_goes_down_by_what_a_completed_task_was_charged(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = await make_emulator(processing_time=(30.0, 30.0), credits=1000.0)
    client = await make_client(emu)
    before = await client.balance()
    assert isinstance(before, oe.Balance)
    assert (before.remaining_credits, before.used_credits, before.available) == (1000, 0, 1000)
    assert before.key_unlimited

    task = await client.submit("https://media.example/a.mp4", "Warmer, keep the rest")
    assert task.usage is not None
    assert task.usage.credits_reserved is not None
    reserved = task.usage.credits_reserved
    held = await client.balance()
    assert held.remaining_credits == pytest.approx(1000 - reserved)
    assert held.used_credits == 0

    emu.complete(task.id)
    done = await client.get(task.id)
    assert done.usage is not None
    assert done.usage.credits_used is not None
    used = done.usage.credits_used
    assert 0 < used < reserved  # settled from actual usage, under the reservation
    assert done.usage.cost == oe.Cost(credits=used, usd=round(used / 68, 4))
    after = await client.balance()
    assert after.remaining_credits == pytest.approx(1000 - used)
    assert after.used_credits == pytest.approx(used)
    assert after.key_used_credits == pytest.approx(used)
    assert emu.credits_remaining == pytest.approx(1000 - used)


async def test_a_create_the_balance_cannot_cover_is_402_with_both_figures_and_nothing_made(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = await make_emulator(credits=50.0)
    client = await make_client(emu)
    with pytest.raises(oe.InsufficientQuotaError) as caught:
        await client.submit("https://media.example/a.mp4", "Warmer, keep the rest")
    error = caught.value
    assert error.code == "account_balance_insufficient"
    assert error.limit == "account_balance"
    assert "this needs about 102.2" in str(error)
    assert "50 left" in str(error)
    assert "top up the account" in str(error)
    assert not emu.tasks


# --- Request ids, Retry-After ------------------------------------------------------------


async def test_every_error_carries_the_answers_request_id(
    emu: Emulator, make_client: ClientFactory
) -> None:
    client = await make_client(emu, max_retries=0)
    with pytest.raises(oe.NotFoundError) as caught:
        await client.get("task-unified-0-missing")
    request_id = emu.stats.requests[-1].request_id
    assert request_id is not None
    assert request_id.startswith("req-")
    assert caught.value.request_id == request_id
    assert f"(request id {request_id})" in str(caught.value)

    # An injected fault's answer, and a proxy's HTML page, are named too.
    for fault in (Fault.status(500), Fault.html(502)):
        emu.inject(fault)
        with pytest.raises(oe.ServerError) as failed:
            await client.get("task-unified-0-missing")
        assert failed.value.request_id == emu.stats.requests[-1].request_id
        assert failed.value.request_id is not None


async def test_the_emulator_names_every_answer_and_checks_list_arguments(emu: Emulator) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:
        for path, status in (
            ("/v1/credits", 200),
            ("/v1/tasks?page_size=5", 200),
            ("/v1/tasks?page_size=101", 400),
            ("/v1/tasks?page=0", 400),
            ("/v1/tasks/task-unified-0-missing", 404),
        ):
            async with session.get(emu.base_url + path, headers=headers) as resp:
                assert resp.status == status, path
                assert resp.headers["x-request-id"].startswith("req-")
        async with session.get(emu.base_url + "/v1/credits") as resp:  # no key: 401
            assert resp.status == 401
            assert "x-request-id" in resp.headers
    ids = [r.request_id for r in emu.stats.requests]
    assert len(set(ids)) == len(ids) == 6


async def test_retry_after_may_be_an_http_date(emu: Emulator, make_client: ClientFactory) -> None:
    client = await make_client(emu, max_retries=0)
    when = datetime.now(timezone.utc) + timedelta(seconds=40)
    emu.inject(Fault.status(429, headers={"Retry-After": format_datetime(when, usegmt=True)}))
    with pytest.raises(oe.RateLimitError) as caught:
        await client.get("task-unified-0-missing")
    assert caught.value.retry_after is not None
    assert 30 <= caught.value.retry_after <= 40
    # A date already past means "now", never a negative wait.
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    emu.inject(Fault.status(503, headers={"Retry-After": format_datetime(past, usegmt=True)}))
    with pytest.raises(oe.ServerError) as late:
        await client.get("task-unified-0-missing")
    assert late.value.retry_after == 0


# --- The finer 402/403 codes -------------------------------------------------------------

_REFUSALS = {
    # code: (error class, limit, words the message must hold)
    "insufficient_quota": (oe.InsufficientQuotaError, "account_balance", "top up"),
    "insufficient_user_quota": (oe.InsufficientQuotaError, "account_balance", "top up"),
    "quota_not_enough": (oe.InsufficientQuotaError, "account_balance", "top up"),
    "account_balance_insufficient": (oe.InsufficientQuotaError, "account_balance", "top up"),
    "insufficient_token_quota": (oe.InsufficientQuotaError, "key_quota", "key's own"),
    "key_quota_exhausted": (oe.InsufficientQuotaError, "key_quota", "key's own"),
    "token_daily_quota_exceeded": (oe.InsufficientQuotaError, "key_daily_quota", "midnight"),
    "key_daily_quota_exhausted": (oe.InsufficientQuotaError, "key_daily_quota", "midnight"),
    "key_disabled": (oe.PermissionDeniedError, "key_disabled", "is disabled"),
    "key_expired": (oe.PermissionDeniedError, "key_expired", "has expired"),
    "key_model_not_allowed": (oe.PermissionDeniedError, "model_not_allowed", "this model"),
}


async def test_each_402_and_403_code_says_which_limit_and_what_to_do(
    emu: Emulator, make_client: ClientFactory
) -> None:
    client = await make_client(emu)
    for code, (cls, limit, words) in _REFUSALS.items():
        emu.inject(Fault.refusal(code, estimated_credits=99.5), method="POST")
        with pytest.raises(oe.APIError) as caught:
            await client.submit("https://media.example/a.mp4", "Warmer, keep the rest")
        error = caught.value
        assert type(error) is cls, code
        assert (error.code, error.limit) == (code, limit)
        assert words in str(error), str(error)
        assert "about 99.5 credits" in str(error)
        assert error.request_id
        assert error.request_id in str(error)
    assert not emu.tasks  # an admission refusal creates nothing
    # A code outside the list is still its status's class, with no limit named.
    emu.inject(Fault.status(402, body={"error": {"code": "something_new", "message": "no"}}))
    with pytest.raises(oe.InsufficientQuotaError) as other:
        await client.get("task-unified-0-missing")
    assert other.value.limit is None


# --- The task list -----------------------------------------------------------------------


async def test_list_tasks_reads_every_page_newest_first_with_the_status_filter(
    emu: Emulator, make_client: ClientFactory
) -> None:
    client = await make_client(emu)
    made = [
        (await client.submit(f"https://media.example/{n}.mp4", f"Edit {n}, keep the rest")).id
        for n in range(7)
    ]
    for task_id in made[:3]:
        emu.complete(task_id)
    before = len(emu.stats.requests)
    listed = [t async for t in client.list_tasks(page_size=2)]
    assert [t.id for t in listed] == made[::-1]
    assert all(not t.results for t in listed)  # the list carries no result links
    assert len(emu.stats.requests) - before == 4  # pages of 2, 2, 2 and 1

    done = [t async for t in client.list_tasks(status="completed")]
    assert [t.id for t in done] == made[:3][::-1]
    assert all(t.status is oe.TaskStatus.COMPLETED for t in done)
    running = [t async for t in client.list_tasks(status=oe.TaskStatus.PENDING, page_size=100)]
    assert {t.id for t in running} <= set(made[3:])


async def test_list_tasks_refuses_bad_arguments_before_sending(
    emu: Emulator, make_client: ClientFactory
) -> None:
    client = await make_client(emu)
    for page_size in (0, 101, -1):
        with pytest.raises(oe.ValidationError, match="page_size"):
            client.list_tasks(page_size=page_size)
    with pytest.raises(oe.ValidationError, match="page_size"):
        client.list_tasks(page_size=True)
    with pytest.raises(oe.ValidationError, match="unknown status 'done'"):
        client.list_tasks(status="done")
    assert not emu.stats.requests


async def test_a_server_repeating_one_page_does_not_keep_the_list_going(
    emu: Emulator, make_client: ClientFactory
) -> None:
    client = await make_client(emu)
    page = {
        "data": [{"id": "t-1", "status": "completed"}, {"id": "t-2", "status": "failed"}],
        "total": 10**9,
    }
    emu.inject(Fault.malformed(json.dumps(page).encode()), path="/v1/tasks", times=50)
    listed = [t.id async for t in client.list_tasks(page_size=2)]
    assert listed == ["t-1", "t-2"]
    assert len(emu.stats.requests) == 2  # the second page brought nothing new: the end


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/tasks", b'{"data": "not a list"}', "data"),
        ("/v1/tasks", b'{"data": [{"id": "../etc", "status": "pending"}]}', "data[0].id"),
        ("/v1/tasks", b'{"data": [{"id": "t", "status": "pending"}], "total": "many"}', "total"),
        ("/v1/tasks", b"[]", None),
        ("/v1/credits", b'{"success": true, "data": {"user": {}}}', "data.user.remaining_credits"),
        ("/v1/credits", b'{"data": {"user": {"remaining_credits": "lots"}}}', None),
        ("/v1/credits", b'{"data": {"user": {"remaining_credits": 1e999}}}', None),
        ("/v1/credits", b'{"success": false, "data": {"user": {"remaining_credits": 1}}}', None),
        ("/v1/credits", b"<html>gateway</html>", None),
    ],
)
async def test_hostile_list_and_balance_answers_are_malformed_responses(
    emu: Emulator, make_client: ClientFactory, path: str, body: bytes, field: str | None
) -> None:
    client = await make_client(emu)
    emu.inject(Fault.malformed(body), path=path)

    async def read() -> object:
        if path == "/v1/credits":
            return await client.balance()
        return [t async for t in client.list_tasks()]

    with pytest.raises(oe.MalformedResponseError) as caught:
        await read()
    if field is not None:
        assert caught.value.field == field


# --- Through the command line ------------------------------------------------------------


async def _cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, emu: Emulator, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("OMNI_EDIT_API_KEY", KEY)
    monkeypatch.setenv("OMNI_EDIT_BASE_URL", emu.base_url)
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    with anyio.fail_after(30):
        code = await anyio.to_thread.run_sync(main, list(args))
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return code, out, err


async def test_cli_balance_and_tasks(
    make_emulator: EmulatorFactory,
    make_client: ClientFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = await make_emulator(processing_time=(30.0, 30.0), credits=5000.0)
    client = await make_client(emu, KEY)
    made = [
        (await client.submit(f"https://media.example/{n}.mp4", f"Edit {n}, keep it")).id
        for n in range(3)
    ]
    emu.complete(made[0])

    code, out, _ = await _cli(capsys, monkeypatch, emu, "balance")
    assert code == 0
    left = emu.credits_remaining
    assert f"account  {left:,.2f} credits remaining" in out
    assert "key      no limit of its own" in out
    code, out, _ = await _cli(capsys, monkeypatch, emu, "balance", "--json")
    assert json.loads(out)["available"] == pytest.approx(left)

    code, out, _ = await _cli(capsys, monkeypatch, emu, "tasks")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split()[:3] == ["TASK", "STATUS", "PROGRESS"]
    assert [line.split()[0] for line in lines[1:]] == made[::-1]
    code, out, _ = await _cli(capsys, monkeypatch, emu, "tasks", "--status", "completed")
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [[made[0], "completed"]]
    code, out, _ = await _cli(capsys, monkeypatch, emu, "status", made[0])
    charged = emu.tasks[made[0]].credits_used
    assert f"credits  {charged:g} charged" in out
    code, out, _ = await _cli(capsys, monkeypatch, emu, "status", made[0], "--json")
    assert json.loads(out)["credits_used"] == charged
    code, out, _ = await _cli(capsys, monkeypatch, emu, "tasks", "--json", "--limit", "2")
    assert [json.loads(line)["task_id"] for line in out.splitlines()] == made[:0:-1]


async def test_cli_batch_checks_the_balance_before_submitting(
    make_emulator: EmulatorFactory,
    media: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = await make_emulator(processing_time=(0.05, 0.1), credits=150.0)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video_url,prompt\n{media}/clip_9_9s.mp4,A\n{media}/clip_9_9s.mp4,B\n")

    # Two clips of 9.9 s: roughly 405.3 credits, against 150.
    code, out, err = await _cli(capsys, monkeypatch, emu, "batch", str(manifest))
    assert code == 2
    assert "needs roughly 405.3 credits (2 inputs) and 150.0 are available" in err
    assert "--ignore-balance" in err
    assert not [r for r in emu.stats.requests if r.method == "POST"]

    code, out, err = await _cli(capsys, monkeypatch, emu, "batch", str(manifest), "--dry-run")
    assert "credits    roughly 405.3" in out
    assert "balance    150.0 credits available: does NOT cover the estimate" in out
    assert not [r for r in emu.stats.requests if r.method == "POST"]

    # --no-preflight reads no clip (hosts that do not even resolve): each row counts as
    # the longest clip the API takes, an upper bound.
    unread = tmp_path / "unread.csv"
    unread.write_text("video_url,prompt\nhttps://m.example/a.mp4,A\nhttps://m.example/b.mp4,B\n")
    code, out, err = await _cli(capsys, monkeypatch, emu, "batch", str(unread), "--no-preflight")
    assert code == 2
    assert "needs up to (each clip counted as 10 s, unread) 409.4 credits (2 inputs)" in err
    assert not [r for r in emu.stats.requests if r.method == "POST"]

    # Overridden: submitted until the account's own refusal, told with what to do.
    code, out, err = await _cli(
        capsys, monkeypatch, emu, "batch", str(manifest), "--ignore-balance"
    )
    assert code == 1
    assert "1 of 2 inputs completed; 1 failed" in out
    assert "the account's credit balance cannot cover this task" in err
    assert "(request id req-" in err


async def test_cli_batch_goes_on_without_a_balance_and_a_daily_stop_says_tomorrow(
    make_emulator: EmulatorFactory,
    media: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = await make_emulator(processing_time=(0.05, 0.1))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video_url,prompt\n{media}/clip_9_9s.mp4,A\n{media}/clip_9_9s.mp4,B\n")
    emu.inject(Fault.status(404), path="/v1/credits")
    emu.inject(Fault.refusal("key_daily_quota_exhausted"), method="POST")
    code, out, err = await _cli(capsys, monkeypatch, emu, "batch", str(manifest))
    assert "warning: the balance could not be read" in err
    assert "going on without the credit check" in err
    assert code == 1
    assert "daily credit limit is used up; it resets at midnight" in err
    assert f"Resume tomorrow with: omni-edit batch {manifest}" in err

    # Tomorrow: the same command resumes from the journal.
    code, out, err = await _cli(capsys, monkeypatch, emu, "batch", str(manifest))
    assert code == 0
    assert "2 of 2 inputs completed" in out
