"""The emulator against docs/api.md, over real loopback HTTP with a plain aiohttp session."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anyio
import pytest
from aiohttp import web
from anyio.abc import Process

from omni_edit._cli import main
from omni_edit.emulator import CallbackAttempt, Emulator, Fault

if TYPE_CHECKING:
    from conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-emulator-test-SECRET"
MODEL = "gemini-omni-flash-video-edit"
CLIP = "https://media.example.com/clip.mp4"
CREATE = "/v1/videos/generations"
REPO_ROOT = Path(__file__).resolve().parents[1]
ID_RE = re.compile(r"task-unified-(\d+)-[a-z0-9]{8}")
TASK_KEYS = {
    "created",
    "id",
    "model",
    "object",
    "progress",
    "status",
    "task_info",
    "type",
    "usage",
}


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "prompt": "warmer light", "video_urls": [CLIP]}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.1, 0.1), seed=1)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A fresh connection per request: aiohttp would silently resend a GET whose reused
    # connection was dropped, which would blur what each test counts.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


async def _create(
    http: aiohttp.ClientSession, emu: Emulator, key: str = KEY, **changes: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(emu.base_url + CREATE, json=_body(**changes), headers=_auth(key)) as r:
        return r.status, await r.json()


async def _get(
    http: aiohttp.ClientSession, emu: Emulator, task_id: str, key: str = KEY
) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{emu.base_url}/v1/tasks/{task_id}", headers=_auth(key)) as r:
        return r.status, await r.json()


async def _new_task(http: aiohttp.ClientSession, emu: Emulator, **changes: Any) -> str:
    status, task = await _create(http, emu, **changes)
    assert status == 200, task
    task_id: str = task["id"]
    return task_id


async def _until(http: aiohttp.ClientSession, emu: Emulator, task_id: str) -> dict[str, Any]:
    """Poll until the task is terminal."""
    with anyio.fail_after(3):
        while True:
            _, task = await _get(http, emu, task_id)
            if task["status"] in ("completed", "failed", "cancelled"):
                return task
            await anyio.sleep(0.02)


# --- create and get ------------------------------------------------------------------


async def test_create_answers_the_documented_task_object(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    before = int(time.time())
    status, task = await _create(http, emu)
    assert status == 200
    assert set(task) == TASK_KEYS
    match = ID_RE.fullmatch(task["id"])
    assert match is not None
    assert int(match[1]) == task["created"]
    assert before <= task["created"] <= time.time()
    assert task["model"] == MODEL
    assert task["object"] == "video.generation.task"
    assert task["type"] == "video"
    assert (task["progress"], task["status"]) == (0, "pending")
    assert task["task_info"] == {"can_cancel": False, "estimated_time": 1}
    usage = task["usage"]
    assert usage["billing_rule"] == "per_token"
    assert usage["user_group"] == "default"
    assert isinstance(usage["credits_reserved"], float)
    assert 90 < usage["credits_reserved"] < 120
    assert emu.stats.creates == 1
    record = emu.tasks[task["id"]]
    assert (record.prompt, record.video_url, record.callback_url) == ("warmer light", CLIP, None)


async def test_the_create_answer_is_pending_even_with_no_processing_time(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator(processing_time=(0.0, 0.0)) as emu:
        _, created = await _create(http, emu)
        _, polled = await _get(http, emu, created["id"])
    assert (created["status"], created["progress"]) == ("pending", 0)
    assert (polled["status"], polled["progress"]) == ("completed", 100)


async def test_credits_are_deterministic_and_grow_with_the_prompt(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    short = [(await _create(http, emu, prompt="warm"))[1] for _ in range(2)]
    long = (await _create(http, emu, prompt="warm " * 400))[1]
    credits = [t["usage"]["credits_reserved"] for t in (*short, long)]
    assert credits[0] == credits[1] < credits[2]


async def test_get_reads_back_the_created_task(http: aiohttp.ClientSession, emu: Emulator) -> None:
    _, created = await _create(http, emu)
    status, task = await _get(http, emu, created["id"])
    assert status == 200
    assert task["id"] == created["id"]
    assert task["created"] == created["created"]
    assert set(task) >= TASK_KEYS


async def test_estimated_time_is_reported_as_configured(http: aiohttp.ClientSession) -> None:
    async with Emulator(processing_time=(0.1, 0.2), estimated_time=0.15) as emu:
        _, task = await _create(http, emu)
    assert task["task_info"]["estimated_time"] == 0.15


# --- the create rules -------------------------------------------------------------------

LONG_CALLBACK = "https://hooks.example.com/" + "a" * 2030


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 7}, "model"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": ["warm"]}, "prompt"),
        ({"video_urls": None}, "video_urls"),
        ({"video_urls": CLIP}, "video_urls"),
        ({"video_urls": []}, "video_urls"),
        ({"video_urls": [CLIP, CLIP]}, "video_urls"),
        ({"video_urls": ["ftp://media.example.com/clip.mp4"]}, "video_urls"),
        ({"video_urls": ["clip.mp4"]}, "video_urls"),
        ({"video_urls": [5]}, "video_urls"),
        ({"duration": 5}, "duration"),
        ({"aspect_ratio": "16:9"}, "aspect_ratio"),
        ({"callback_url": "http://hooks.example.com/cb"}, "callback_url"),
        ({"callback_url": "https://127.0.0.1/cb"}, "callback_url"),
        ({"callback_url": "https://localhost/cb"}, "callback_url"),
        ({"callback_url": "https://10.1.2.3/cb"}, "callback_url"),
        ({"callback_url": "https://172.20.0.1/cb"}, "callback_url"),
        ({"callback_url": "https://192.168.1.1/cb"}, "callback_url"),
        ({"callback_url": "https://169.254.169.254/latest"}, "callback_url"),
        ({"callback_url": "https://[::1]/cb"}, "callback_url"),
        ({"callback_url": "https://[::ffff:10.0.0.1]/cb"}, "callback_url"),
        ({"callback_url": "https://[fd00::1]/cb"}, "callback_url"),
        ({"callback_url": LONG_CALLBACK}, "callback_url"),
        ({"callback_url": "not a url"}, "callback_url"),
    ],
)
async def test_each_create_rule_is_a_400_naming_its_param(
    http: aiohttp.ClientSession, emu: Emulator, changes: dict[str, Any], param: str
) -> None:
    if "model" in changes and changes["model"] is None:
        body = _body()
        del body["model"]
        async with http.post(emu.base_url + CREATE, json=body, headers=_auth()) as r:
            status, answer = r.status, await r.json()
    else:
        status, answer = await _create(http, emu, **changes)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["param"] == param
    assert answer["error"]["message"]
    assert emu.stats.creates == 0
    assert emu.tasks == {}


async def test_an_unknown_model_is_404(http: aiohttp.ClientSession, emu: Emulator) -> None:
    status, answer = await _create(http, emu, model="gemini-omni-pro")
    assert status == 404
    assert answer["error"]["type"] == "not_found_error"
    assert answer["error"]["param"] == "model"
    assert emu.stats.creates == 0


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_a_body_that_is_not_a_json_object_is_400(
    http: aiohttp.ClientSession, emu: Emulator, raw: bytes
) -> None:
    headers = {**_auth(), "Content-Type": "application/json"}
    async with http.post(emu.base_url + CREATE, data=raw, headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["error"]["type"] == "invalid_request_error"


async def test_a_body_over_1_mib_is_413(http: aiohttp.ClientSession, emu: Emulator) -> None:
    body = json.dumps(_body(prompt="x" * (1024 * 1024))).encode()
    async with http.post(emu.base_url + CREATE, data=body, headers=_auth()) as r:
        assert r.status == 413
        assert (await r.json())["error"]["type"] == "request_too_large_error"
    assert emu.stats.creates == 0


async def test_a_2048_character_https_callback_is_accepted(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    url = "https://hooks.example.com/" + "a" * (2048 - 26)
    assert len(url) == 2048
    status, _ = await _create(http, emu, callback_url=url)
    assert status == 200


async def test_loopback_http_callbacks_need_allow_http_callbacks(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator(allow_http_callbacks=True) as emu:
        for url in ("http://127.0.0.1:9/cb", "http://localhost:9/cb", "https://[::1]:9/cb"):
            status, _ = await _create(http, emu, callback_url=url)
            assert status == 200, url
        # Loopback is allowed for tests; the other internal ranges stay closed.
        status, answer = await _create(http, emu, callback_url="http://10.0.0.1/cb")
        assert status == 400
        assert answer["error"]["param"] == "callback_url"


# --- authentication and lookups ---------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}],
)
async def test_a_missing_or_malformed_key_is_401(
    http: aiohttp.ClientSession, emu: Emulator, headers: dict[str, str]
) -> None:
    async with http.post(emu.base_url + CREATE, json=_body(), headers=headers) as r:
        assert r.status == 401
        assert (await r.json())["error"]["type"] == "authentication_error"
    assert emu.stats.creates == 0
    assert emu.stats.requests[0].had_authorization is bool(headers)
    assert emu.stats.requests[0].authorized is False


async def test_only_listed_keys_are_accepted_when_keys_are_given(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator(api_keys={"good-key"}) as emu:
        assert (await _create(http, emu, key="other-key"))[0] == 401
        assert (await _create(http, emu, key="good-key"))[0] == 200


async def test_the_key_is_never_kept_or_logged(
    http: aiohttp.ClientSession, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="omni_edit.emulator")
    task_id = await _new_task(http, emu)
    await _get(http, emu, task_id)
    assert caplog.records
    for text in (caplog.text, repr(emu.stats), repr(emu.tasks)):
        assert KEY not in text


async def test_a_malformed_task_id_is_400_invalid_task_id(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    status, answer = await _get(http, emu, "job!123")
    assert status == 400
    assert answer["error"]["code"] == "invalid_task_id"
    assert answer["error"]["type"] == "invalid_request_error"


async def test_an_unknown_task_is_404(http: aiohttp.ClientSession, emu: Emulator) -> None:
    status, answer = await _get(http, emu, "task-unified-1757169743-7cvnl5zw")
    assert status == 404
    assert answer["error"]["type"] == "not_found_error"


async def test_another_keys_task_is_404(http: aiohttp.ClientSession, emu: Emulator) -> None:
    task_id = await _new_task(http, emu)
    status, answer = await _get(http, emu, task_id, key="someone-else")
    assert status == 404
    assert answer["error"]["type"] == "not_found_error"


async def test_unknown_paths_answer_json_errors(http: aiohttp.ClientSession, emu: Emulator) -> None:
    async with http.get(emu.base_url + "/v1/models", headers=_auth()) as r:
        assert r.status == 404
        assert (await r.json())["error"]["type"] == "not_found_error"
    async with http.delete(emu.base_url + "/v1/tasks/task-unified-1-x", headers=_auth()) as r:
        assert r.status == 405
        assert "error" in await r.json()


# --- lifecycle ------------------------------------------------------------------------------


async def test_a_task_completes_with_one_presigned_result_on_another_origin(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    task = await _until(http, emu, await _new_task(http, emu))
    assert (task["status"], task["progress"]) == ("completed", 100)
    assert "error" not in task
    assert task["task_info"]["video_duration"] == 5
    [url] = task["results"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == emu.result_base_url != emu.base_url
    assert parts.hostname == "127.0.0.2"
    assert parts.path.endswith(".mp4")
    query = parse_qs(parts.query)
    assert set(query) == {"expires", "signature"}
    assert int(query["expires"][0]) > time.time() + 23 * 3600
    record = emu.tasks[task["id"]]
    assert record.status == "completed"
    assert record.results == [url]
    assert record.finished_at is not None


async def test_a_task_can_end_failed_with_a_drawn_code(http: aiohttp.ClientSession) -> None:
    codes = ("generation_timeout", "content_policy_violation")
    async with Emulator(processing_time=(0.05, 0.1), failure_rate=1.0, failure_codes=codes) as emu:
        task = await _until(http, emu, await _new_task(http, emu))
    assert task["status"] == "failed"
    assert task["error"]["code"] in codes
    assert task["error"]["message"]
    assert "results" not in task
    assert task["progress"] < 100


async def test_a_task_can_end_cancelled(http: aiohttp.ClientSession) -> None:
    async with Emulator(processing_time=(0.05, 0.1), cancel_rate=1.0) as emu:
        task = await _until(http, emu, await _new_task(http, emu))
    assert task["status"] == "cancelled"
    assert task["error"]["code"] == "request_cancelled"


async def test_progress_rises_through_processing(http: aiohttp.ClientSession) -> None:
    async with Emulator(processing_time=(0.6, 0.6), estimated_time=60) as emu:
        task_id = await _new_task(http, emu)
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(3):
            while not seen or seen[-1]["status"] != "completed":
                seen.append((await _get(http, emu, task_id))[1])
                await anyio.sleep(0.05)
    processing = [t for t in seen if t["status"] == "processing"]
    assert len(processing) >= 5
    progress = [t["progress"] for t in processing]
    assert progress == sorted(progress)
    assert progress[0] < 40 < progress[-1] <= 99
    estimates = [t["task_info"]["estimated_time"] for t in processing]
    assert estimates == sorted(estimates, reverse=True)
    assert estimates[-1] < estimates[0] <= 60
    assert all(t["task_info"]["video_duration"] == 5 for t in processing)
    assert seen[-1]["progress"] == 100


async def test_forced_outcomes_take_effect_at_once(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator(processing_time=(30, 30)) as emu:
        ids = [await _new_task(http, emu) for _ in range(3)]
        emu.complete(ids[0])
        emu.fail(ids[1], code="quota_exceeded")
        emu.cancel(ids[2])
        tasks = [(await _get(http, emu, i))[1] for i in ids]
        with pytest.raises(ValueError, match="already ended"):
            emu.fail(ids[0])
        with pytest.raises(KeyError):
            emu.complete("task-unified-1-nosuchid")
    assert tasks[0]["status"] == "completed"
    assert len(tasks[0]["results"]) == 1
    assert tasks[1]["status"] == "failed"
    assert tasks[1]["error"]["code"] == "quota_exceeded"
    assert tasks[2]["status"] == "cancelled"
    assert tasks[2]["error"]["code"] == "request_cancelled"


async def test_the_seed_makes_the_draws_reproducible(http: aiohttp.ClientSession) -> None:
    outcomes = []
    for _ in range(2):
        async with Emulator(processing_time=(5, 9), failure_rate=0.5, seed=42) as emu:
            for _ in range(12):
                await _new_task(http, emu)
            outcomes.append([(t.outcome, t.processing_time) for t in emu.tasks.values()])
    assert outcomes[0] == outcomes[1]
    assert {o for o, _ in outcomes[0]} == {"completed", "failed"}


# --- the result host ------------------------------------------------------------------------


@pytest.fixture
async def result_url(http: aiohttp.ClientSession, emu: Emulator) -> str:
    task = await _until(http, emu, await _new_task(http, emu))
    url: str = task["results"][0]
    return url


async def test_the_result_is_a_whole_mp4_with_validators(
    http: aiohttp.ClientSession, result_url: str
) -> None:
    async with http.get(result_url) as r:
        assert r.status == 200
        data = await r.read()
        assert r.headers["Content-Length"] == str(len(data)) == "32768"
        assert r.headers["Accept-Ranges"] == "bytes"
        assert r.headers["Content-Type"] == "video/mp4"
        assert r.headers["ETag"].startswith('"')
    boxes = dict(_top_level_boxes(data))
    assert data[4:12] == b"ftypisom"
    assert list(boxes) == [b"ftyp", b"moov", b"mdat"]
    assert sum(boxes.values()) == len(data)
    mvhd = data.index(b"mvhd")
    timescale, duration = struct.unpack(">II", data[mvhd + 16 : mvhd + 24])
    assert duration / timescale == 5
    async with http.get(result_url) as again:
        assert await again.read() == data


def _top_level_boxes(data: bytes) -> Iterator[tuple[bytes, int]]:
    pos = 0
    while pos < len(data):
        size = struct.unpack(">I", data[pos : pos + 4])[0]
        yield data[pos + 4 : pos + 8], size
        pos += size


@pytest.mark.parametrize(
    ("range_header", "span"),
    [("bytes=1000-", (1000, 32768)), ("bytes=10-19", (10, 20)), ("bytes=-100", (32668, 32768))],
)
async def test_a_range_is_answered_206_with_content_range(
    http: aiohttp.ClientSession, result_url: str, range_header: str, span: tuple[int, int]
) -> None:
    async with http.get(result_url) as r:
        whole = await r.read()
    async with http.get(result_url, headers={"Range": range_header}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes {span[0]}-{span[1] - 1}/32768"
        assert await r.read() == whole[span[0] : span[1]]


async def test_a_range_past_the_end_is_416(http: aiohttp.ClientSession, result_url: str) -> None:
    async with http.get(result_url, headers={"Range": "bytes=32768-"}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == "bytes */32768"


async def test_if_range_sends_the_whole_file_unless_the_etag_matches(
    http: aiohttp.ClientSession, result_url: str
) -> None:
    async with http.head(result_url) as r:
        etag = r.headers["ETag"]
    stale = {"Range": "bytes=100-", "If-Range": '"some-other-version"'}
    async with http.get(result_url, headers=stale) as r:
        assert r.status == 200
        assert len(await r.read()) == 32768
    fresh = {"Range": "bytes=100-", "If-Range": etag}
    async with http.get(result_url, headers=fresh) as r:
        assert r.status == 206
        assert len(await r.read()) == 32668


async def test_a_tampered_signature_is_403(http: aiohttp.ClientSession, result_url: str) -> None:
    async with http.get(result_url[:-4] + "0000") as r:
        assert r.status == 403
    async with http.get(result_url.split("?")[0]) as r:
        assert r.status == 403


async def test_expired_results_are_403(
    http: aiohttp.ClientSession, emu: Emulator, result_url: str
) -> None:
    task_id = next(iter(emu.tasks))
    emu.expire_results(task_id)
    async with http.get(result_url) as r:
        assert r.status == 403
        assert "expired" in await r.text()


async def test_results_expire_after_result_ttl(http: aiohttp.ClientSession) -> None:
    async with Emulator(processing_time=(0.05, 0.05), result_ttl=0.2) as emu:
        task = await _until(http, emu, await _new_task(http, emu))
        async with http.get(task["results"][0]) as r:
            assert r.status == 200
        await anyio.sleep(0.25)
        async with http.get(task["results"][0]) as r:
            assert r.status == 403


async def test_the_result_host_keeps_a_record_of_every_header(
    http: aiohttp.ClientSession, emu: Emulator, result_url: str
) -> None:
    async with http.get(result_url, headers={"Range": "bytes=5-", "Cookie": "a=b"}) as r:
        await r.read()
    [record] = emu.stats.result_requests
    assert record.status == 206
    assert record.range == "bytes=5-"
    assert "cookie" in record.headers
    assert "COOKIE" in record.headers
    assert "authorization" not in record.headers
    assert record.path.startswith("/results/")
    assert "signature" not in record.path


# --- injected faults on the API -----------------------------------------------------------


async def test_a_status_fault_answers_without_creating(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.status(429), method="POST")
    async with http.post(emu.base_url + CREATE, json=_body(), headers=_auth()) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "1"
        error = (await r.json())["error"]
    assert error == {
        "code": 429,
        "message": "Too Many Requests",
        "type": "rate_limit_error",
        "fallback_suggestion": "retry after 1 seconds",
    }
    assert emu.stats.creates == 0
    assert (await _create(http, emu))[0] == 200  # used up


@pytest.mark.parametrize(
    ("code", "error_type"),
    [(400, "invalid_request_error"), (402, "insufficient_quota_error"), (403, "permission_error"),
     (500, "internal_server_error"), (502, "upstream_error")],
)  # fmt: skip
async def test_status_faults_carry_the_documented_type(
    http: aiohttp.ClientSession, emu: Emulator, code: int, error_type: str
) -> None:
    emu.inject(Fault.status(code))
    status, answer = await _get(http, emu, "task-unified-1-x")
    assert status == code
    assert answer["error"]["type"] == error_type
    assert "fallback_suggestion" not in answer["error"]


async def test_a_503_fault_takes_its_retry_after_from_headers(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.status(503, headers={"Retry-After": "7"}))
    async with http.get(emu.base_url + "/v1/tasks/task-unified-1-x", headers=_auth()) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "7"
        error = (await r.json())["error"]
    assert error["type"] == "service_unavailable_error"
    assert error["fallback_suggestion"] == "retry after 7 seconds"


async def test_a_status_fault_can_carry_a_custom_body(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.status(400, body={"error": {"code": "x", "message": "m", "type": "t"}}))
    emu.inject(Fault.status(429, retry_after=None))
    assert (await _get(http, emu, "task-unified-1-x"))[1]["error"]["code"] == "x"
    async with http.get(emu.base_url + "/v1/tasks/task-unified-1-x", headers=_auth()) as r:
        assert r.status == 429
        assert "Retry-After" not in r.headers


async def test_an_html_fault_looks_like_a_proxy_page(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.html(502), method="POST")
    async with http.post(emu.base_url + CREATE, json=_body(), headers=_auth()) as r:
        assert r.status == 502
        assert r.headers["Content-Type"].startswith("text/html")
        assert "<html>" in await r.text()
    assert emu.stats.creates == 0


async def test_an_empty_fault_has_no_body(http: aiohttp.ClientSession, emu: Emulator) -> None:
    emu.inject(Fault.empty(504))
    async with http.get(emu.base_url + "/v1/tasks/task-unified-1-x", headers=_auth()) as r:
        assert r.status == 504
        assert await r.read() == b""


async def test_a_malformed_fault_processes_the_request(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.malformed(b'{"id": 12'), method="POST")
    async with http.post(emu.base_url + CREATE, json=_body(), headers=_auth()) as r:
        assert r.status == 200
        assert await r.read() == b'{"id": 12'
    assert emu.stats.creates == 1
    assert len(emu.tasks) == 1


async def test_drop_before_sends_nothing_and_creates_nothing(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.drop_before(), method="POST")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await _create(http, emu)
    assert emu.stats.creates == 0
    assert emu.tasks == {}
    assert emu.stats.requests[-1].status is None


async def test_drop_after_creates_the_task_but_loses_the_answer(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.drop_after(), method="POST")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await _create(http, emu)
    assert emu.stats.creates == 1
    assert len(emu.tasks) == 1
    [record] = emu.stats.requests
    assert (record.method, record.status) == ("POST", None)


async def test_a_delay_fault_outlasts_a_client_timeout_after_creating(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.delay(0.5), method="POST")
    timeout = aiohttp.ClientTimeout(total=0.15)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            emu.base_url + CREATE, json=_body(), headers=_auth(), timeout=timeout
        ) as r:
            await r.read()
    assert emu.stats.creates == 1


async def test_a_redirect_fault_is_not_processed(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.redirect("http://127.0.0.3:9/elsewhere"), method="POST")
    async with http.post(
        emu.base_url + CREATE, json=_body(), headers=_auth(), allow_redirects=False
    ) as r:
        assert r.status == 302
        assert r.headers["Location"] == "http://127.0.0.3:9/elsewhere"
    assert emu.stats.creates == 0


async def test_faults_match_method_path_and_times(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.inject(Fault.status(500), method="GET", path="/v1/tasks/task-unified-1-", times=2)
    assert (await _create(http, emu))[0] == 200
    assert (await _get(http, emu, "task-unified-2-x"))[0] == 404
    assert (await _get(http, emu, "task-unified-1-x"))[0] == 500
    assert (await _get(http, emu, "task-unified-1-y"))[0] == 500
    assert (await _get(http, emu, "task-unified-1-z"))[0] == 404


def test_faults_refuse_a_host_they_cannot_act_on() -> None:
    emu = Emulator()
    with pytest.raises(ValueError, match="API host"):
        emu.inject(Fault.drop_after_bytes(10))
    with pytest.raises(ValueError, match="result host"):
        emu.inject_result(Fault.drop_after())
    with pytest.raises(ValueError, match="times"):
        emu.inject(Fault.status(500), times=0)
    with pytest.raises(ValueError, match="100-599"):
        Fault.status(99)


# --- injected faults on the result host --------------------------------------------------


async def _read_into(http: aiohttp.ClientSession, url: str, received: bytearray) -> None:
    async with http.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == "32768"
        async for chunk in r.content.iter_any():
            received += chunk


async def test_drop_after_bytes_cuts_the_body_short(
    http: aiohttp.ClientSession, emu: Emulator, result_url: str
) -> None:
    emu.inject_result(Fault.drop_after_bytes(1000))
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        await _read_into(http, result_url, received)
    assert len(received) == 1000
    async with http.get(result_url) as r:
        assert (await r.read())[:1000] == received


async def test_result_faults_can_answer_a_status(
    http: aiohttp.ClientSession, emu: Emulator, result_url: str
) -> None:
    emu.inject_result(Fault.status(503), times=2)
    for _ in range(2):
        async with http.get(result_url) as r:
            assert r.status == 503
    async with http.get(result_url) as r:
        assert r.status == 200


async def test_ignore_range_sends_the_whole_file(
    http: aiohttp.ClientSession, emu: Emulator, result_url: str
) -> None:
    emu.inject_result(Fault.ignore_range())
    async with http.get(result_url, headers={"Range": "bytes=100-"}) as r:
        assert r.status == 200
        assert "Content-Range" not in r.headers
        assert len(await r.read()) == 32768


async def test_a_result_redirect_leads_to_another_origin(
    http: aiohttp.ClientSession, emu: Emulator, result_url: str
) -> None:
    async with _receiver([200]) as hook:
        emu.inject_result(Fault.redirect(hook.url), times=2)
        async with http.get(result_url, allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == hook.url
        async with http.get(result_url) as r:
            assert r.status == 200
            assert r.url.port == hook.port
    assert hook.hits == 1


# --- random knobs and limits ------------------------------------------------------------


async def test_rate_429_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    async with Emulator(rate_429=1.0) as emu:
        async with http.post(emu.base_url + CREATE, json=_body(), headers=_auth()) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "1"
        assert emu.stats.creates == 0


async def test_rate_5xx_and_drop_rate_hit_api_requests_only(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator(rate_5xx=1.0, processing_time=(0.0, 0.0)) as emu:
        assert (await _get(http, emu, "task-unified-1-x"))[0] in (500, 502, 503)
    async with Emulator(drop_rate=1.0, seed=3) as emu:
        for _ in range(6):
            with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                await _create(http, emu)
        # Some drops came before processing and some after, as on the real network.
        assert 0 < emu.stats.creates < 6


async def test_the_concurrency_limit_refuses_creates_with_retry_after(
    http: aiohttp.ClientSession,
) -> None:
    async with Emulator(processing_time=(0.3, 0.3), concurrency_limit=2) as emu:
        await _new_task(http, emu)
        await _new_task(http, emu)
        async with http.post(emu.base_url + CREATE, json=_body(), headers=_auth()) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "1"
            assert (await r.json())["error"]["type"] == "rate_limit_error"
        assert (await _create(http, emu, key="another-key"))[0] == 200
        await anyio.sleep(0.35)
        assert (await _create(http, emu))[0] == 200
        assert emu.stats.creates == 4


async def test_the_rate_limit_refuses_requests_over_it(http: aiohttp.ClientSession) -> None:
    async with Emulator(rate_limit=5) as emu:
        statuses = [(await _get(http, emu, "task-unified-1-x"))[0] for _ in range(7)]
        assert statuses[:5] == [404] * 5
        assert 429 in statuses[5:]
        async with http.get(emu.base_url + "/v1/tasks/x", headers=_auth()) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "1"
        await anyio.sleep(0.25)
        assert (await _get(http, emu, "task-unified-1-x"))[0] == 404


# --- callbacks --------------------------------------------------------------------------


class _Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        self.hits = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if request.method == "POST":
            self.bodies.append(await request.json())
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.Response(status=status)


@asynccontextmanager
async def _receiver(statuses: list[int]) -> AsyncIterator[_Receiver]:
    receiver = _Receiver(statuses)
    app = web.Application()
    app.router.add_route("*", "/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.port = runner.addresses[0][1]
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def _wait_for(condition: Any, seconds: float = 3.0) -> None:
    with anyio.fail_after(seconds):
        # The emulator keeps records, not events: polling them is what a test can do.
        while not condition():
            await anyio.sleep(0.01)


async def test_a_callback_is_retried_after_500s_and_carries_the_task(
    http: aiohttp.ClientSession,
) -> None:
    async with (
        _receiver([500, 500, 200]) as hook,
        Emulator(
            processing_time=(0.05, 0.05),
            allow_http_callbacks=True,
            callback_retry_delays=(0.05, 0.05, 0.05),
        ) as emu,
    ):
        task_id = await _new_task(http, emu, callback_url=hook.url)
        await _wait_for(lambda: len(emu.callbacks_sent) == 3)
        await anyio.sleep(0.1)  # no fourth attempt after the 200
        _, polled = await _get(http, emu, task_id)
    assert emu.callbacks_sent == [
        (task_id, "completed", 500),
        (task_id, "completed", 500),
        (task_id, "completed", 200),
    ]
    assert emu.stats.callbacks == 3
    assert hook.bodies == [polled] * 3


async def test_a_callback_gives_up_after_three_retries(http: aiohttp.ClientSession) -> None:
    async with (
        _receiver([503]) as hook,
        Emulator(
            processing_time=(0.05, 0.05),
            cancel_rate=1.0,
            allow_http_callbacks=True,
            callback_retry_delays=(0.02, 0.02, 0.02),
        ) as emu,
    ):
        task_id = await _new_task(http, emu, callback_url=hook.url)
        await _wait_for(lambda: len(emu.callbacks_sent) == 4)
        await anyio.sleep(0.1)
    assert emu.callbacks_sent == [CallbackAttempt(task_id, "cancelled", 503)] * 4
    assert hook.bodies[0]["error"]["code"] == "request_cancelled"


async def test_an_unreachable_callback_is_recorded_without_status(
    http: aiohttp.ClientSession,
) -> None:
    async with _receiver([200]) as hook:
        url = hook.url  # a port that is closed once the receiver is gone
    async with Emulator(
        processing_time=(0.05, 0.05),
        allow_http_callbacks=True,
        callback_retry_delays=(0.01,),
    ) as emu:
        task_id = await _new_task(http, emu, callback_url=url)
        await _wait_for(lambda: len(emu.callbacks_sent) == 2)
    assert emu.callbacks_sent == [(task_id, "completed", None)] * 2


async def test_a_forced_outcome_sends_its_callback_at_once(
    http: aiohttp.ClientSession,
) -> None:
    async with (
        _receiver([200]) as hook,
        Emulator(processing_time=(30, 30), allow_http_callbacks=True) as emu,
    ):
        task_id = await _new_task(http, emu, callback_url=hook.url)
        emu.fail(task_id, code="resource_exhausted")
        await _wait_for(lambda: len(emu.callbacks_sent) == 1, seconds=1)
    assert emu.callbacks_sent == [(task_id, "failed", 200)]
    assert hook.bodies[0]["error"]["code"] == "resource_exhausted"


# --- stats and shutdown -----------------------------------------------------------------


async def test_stats_count_requests_in_flight_and_creates(http: aiohttp.ClientSession) -> None:
    async with Emulator(latency=0.1) as emu:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(_get, http, emu, "task-unified-1-x")
        async with http.get(emu.base_url + "/v1/tasks/x") as r:
            assert r.status == 401
        await _new_task(http, emu)
        assert emu.stats.max_in_flight == 5
        assert emu.stats.in_flight == 0
        assert emu.stats.creates == 1
        assert [r.status for r in emu.stats.requests] == [404] * 5 + [401, 200]
        assert [r.had_authorization for r in emu.stats.requests] == [True] * 5 + [False, True]
        first = emu.stats.requests[0]
        assert first.method == "GET"
        assert first.path == "/v1/tasks/task-unified-1-x"
        assert first.time <= time.monotonic()


async def test_close_cancels_every_job_and_closes_every_socket(
    http: aiohttp.ClientSession,
) -> None:
    outside = asyncio.all_tasks()
    async with _receiver([500]) as hook:
        emu = Emulator(
            processing_time=(30, 30), allow_http_callbacks=True, callback_retry_delays=(30.0,)
        )
        await emu.start()
        ids = [await _new_task(http, emu, callback_url=hook.url) for _ in range(3)]
        # One delivery waits to retry, two tasks wait to end, one request is held.
        emu.complete(ids[0])
        await _wait_for(lambda: len(emu.callbacks_sent) == 1)
        emu.inject(Fault.delay(30), method="GET")
        slow = asyncio.ensure_future(_get(http, emu, "task-unified-1-x"))
        await anyio.sleep(0.1)
        started = time.monotonic()
        await emu.close()
        assert time.monotonic() - started < 2
        await emu.close()  # a second close is harmless
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await slow
        with pytest.raises(aiohttp.ClientConnectorError):
            await _get(http, emu, "task-unified-1-x")
    leftover = asyncio.all_tasks() - outside - {asyncio.current_task()}
    assert not [t for t in leftover if not t.done()]


# --- the command line -------------------------------------------------------------------


async def test_the_cli_serves_until_ctrl_c(http: aiohttp.ClientSession) -> None:
    code = "import sys; from omni_edit._cli import main; sys.exit(main())"
    command = [sys.executable, "-c", code, "emulator", "--port", "0", "--rate-429", "0"]
    command += ["--batch-reads", "405", "--estimate", "absent"]
    async with await anyio.open_process(command, cwd=REPO_ROOT) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        lines: list[str] = []
        with anyio.fail_after(10):
            buffer = b""
            while len(lines) < 3:
                buffer += await process.stdout.receive()
                *done, rest = buffer.split(b"\n")
                lines += [line.decode() for line in done]
                buffer = rest
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines[1:3])
        assert exports["OMNI_EDIT_API_KEY"] == "emulator-key"
        base_url = exports["OMNI_EDIT_BASE_URL"]
        assert base_url in lines[0]
        headers = {"Authorization": f"Bearer {exports['OMNI_EDIT_API_KEY']}"}
        async with http.get(base_url + "/v1/tasks/nope", headers=headers) as r:
            assert r.status == 404
        batch = {"task_ids": ["task-unified-1-a", "task-unified-1-b"]}
        async with http.post(base_url + "/v1/tasks/batch", json=batch, headers=headers) as r:
            assert r.status == 405  # --batch-reads 405: a deployment without batch reads
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            assert await process.wait() == 0
        errors = b""
        async for chunk in process.stderr:
            errors += chunk
    assert b"Traceback" not in errors


async def test_the_cli_enforces_the_key_given_with_api_key(http: aiohttp.ClientSession) -> None:
    code = "import sys; from omni_edit._cli import main; sys.exit(main())"
    command = [sys.executable, "-c", code, "emulator", "--port", "0", "--api-key", "secret"]
    async with await anyio.open_process(command, cwd=REPO_ROOT) as process:
        try:
            await _check_key_is_enforced(process, http)
        finally:
            if process.returncode is None:  # a failed check: end the server here
                process.kill()


async def _check_key_is_enforced(process: Process, http: aiohttp.ClientSession) -> None:
    assert process.stdout is not None
    lines: list[str] = []
    with anyio.fail_after(10):
        buffer = b""
        while len(lines) < 3:
            buffer += await process.stdout.receive()
            *done, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in done]
    base_url = lines[1].removeprefix("export OMNI_EDIT_BASE_URL=")
    assert "--api-key" in lines[2]
    assert "secret" not in "".join(lines)
    url = base_url + "/v1/tasks/task-unified-1-nosuch"
    for headers in ({"Authorization": "Bearer wrong"}, {}):
        async with http.get(url, headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"]["type"] == "authentication_error"
    async with http.get(url, headers={"Authorization": "Bearer secret"}) as r:
        assert r.status == 404
    process.send_signal(signal.SIGINT)
    with anyio.fail_after(10):
        assert await process.wait() == 0


async def test_results_fall_back_to_127_0_0_1_when_the_result_host_cannot_be_bound(
    make_emulator: EmulatorFactory, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here, as 127.0.0.2 is on none on macOS.
    with caplog.at_level(logging.WARNING, logger="omni_edit.emulator"):
        emu = await make_emulator(processing_time=(0.0, 0.0), result_host="192.0.2.1")
    assert "cannot serve results from 192.0.2.1" in caplog.text
    result_origin = urlsplit(emu.result_base_url)
    assert result_origin.hostname == "127.0.0.1"
    assert result_origin.port != urlsplit(emu.base_url).port
    task = await _until(http, emu, await _new_task(http, emu))
    (result_url,) = task["results"]
    assert result_url.startswith(emu.result_base_url + "/results/")
    async with http.get(result_url) as r:
        assert r.status == 200
        assert (await r.read())[4:8] == b"ftyp"


def test_the_cli_refuses_knobs_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--port", "0", "--failure-rate", "2"]) == 2
    assert "failure_rate" in capsys.readouterr().err
