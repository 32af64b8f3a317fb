"""The result host: presigned result files served from a second origin.

Like an object store behind presigned links, it knows nothing of API keys: a link is
valid while its signature matches and its lifetime has not run out. It answers single
byte ranges (RFC 9110): ``bytes=N-``, ``bytes=N-M`` and ``bytes=-N`` get a 206, a range
past the end a 416, and an ``If-Range`` that does not match the ETag the whole file.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import time
from email.utils import formatdate

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ._faults import Fault, FaultQueue, drop_connection
from ._mp4 import ResultFile
from ._render import RenderedFile, ResultRenderer
from ._state import EmulatedTask, TaskStore, clock
from ._stats import ResultRequestRecord, Stats

__all__ = ["ResultHost", "UnsatisfiableRange", "parse_range"]

_DIGITS = re.compile(r"[0-9]+")


class UnsatisfiableRange(Exception):
    """A range that starts past the end of the file."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The ``(start, stop)`` byte span (stop exclusive) a ``Range`` header asks for.

    ``None`` for a header to ignore (another unit, several ranges, bad syntax): the whole
    file is then sent, as RFC 9110 allows. Raises ``UnsatisfiableRange`` for a range
    beyond the end.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.strip().partition("-"))
    if (
        not dash
        or (first and not _DIGITS.fullmatch(first))
        or (last and not _DIGITS.fullmatch(last))
    ):
        return None
    if not first:
        if not last:
            return None
        if int(last) == 0 or size == 0:
            raise UnsatisfiableRange(header)
        return max(0, size - int(last)), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise UnsatisfiableRange(header)
    return start, min(int(last) + 1, size) if last else size


def _xml_error(status: int, code: str, message: str) -> web.Response:
    # An object store's error shape, not the API's JSON: it is another service.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>\n"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class ResultHost:
    """Serves the result files of ``store``'s completed tasks and signs their links."""

    def __init__(
        self,
        *,
        store: TaskStore,
        size: int,
        ttl: float,
        stats: Stats,
        faults: FaultQueue,
        renderer: ResultRenderer | None = None,
    ) -> None:
        self.base_url = ""  # set once the host's socket is bound
        self._store = store
        self._size = size
        self._ttl = ttl
        self._stats = stats
        self._faults = faults
        # With a renderer, results are real clips (docs/media.md); else placeholders.
        self._renderer = renderer
        self._secret = secrets.token_bytes(16)

    def app(self) -> web.Application:
        """The aiohttp application of the result host."""
        app = web.Application()
        app.router.add_get("/results/{name}.mp4", self._serve)
        return app

    def url_for(self, task: EmulatedTask) -> str:
        """The presigned link to ``task``'s result, valid ``ttl`` seconds after it ends."""
        expires = math.ceil(task.ends_wall + self._ttl)
        signature = self._sign(task.result_name, expires)
        query = f"expires={expires}&signature={signature}"
        return f"{self.base_url}/results/{task.result_name}.mp4?{query}"

    def _sign(self, name: str, expires: int) -> str:
        message = f"{name}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def _denial(self, request: web.Request, task: EmulatedTask) -> str | None:
        expires, signature = request.query.get("expires", ""), request.query.get("signature", "")
        if not _DIGITS.fullmatch(expires) or not hmac.compare_digest(
            signature, self._sign(task.result_name, int(expires))
        ):
            return "The request signature does not match."
        now = time.time()
        if task.results_revoked or now > int(expires) or now > task.ends_wall + self._ttl:
            return "Request has expired."
        return None

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        record = ResultRequestRecord(
            method=request.method,
            path=request.path,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            range=request.headers.get("Range"),
            status=None,
            time=clock(),
        )
        self._stats.result_requests.append(record)
        response, record.status = await self._answer(request)
        return response

    async def _answer(self, request: web.Request) -> tuple[web.StreamResponse, int | None]:
        fault = self._faults.take(request.method, request.path)
        if fault is not None:
            if fault.kind == "drop_before":
                return drop_connection(request), None
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
            elif fault.kind not in ("drop_after_bytes", "ignore_range"):
                response = fault.response()
                return response, response.status
        task = self._store.by_result_name(request.match_info["name"])
        if task is None or task.status != "completed":
            return _xml_error(404, "NoSuchKey", "The specified key does not exist."), 404
        denial = self._denial(request, task)
        if denial is not None:
            return _xml_error(403, "AccessDenied", denial), 403
        return await self._send_file(request, task, fault)

    async def _send_file(
        self, request: web.Request, task: EmulatedTask, fault: Fault | None
    ) -> tuple[web.StreamResponse, int | None]:
        file: ResultFile | RenderedFile
        if self._renderer is not None:
            file = await self._renderer.file_for(task)
        else:
            file = ResultFile(task.result_name, self._size)
        headers = {
            "Content-Type": "video/mp4",
            "Accept-Ranges": "bytes",
            "ETag": file.etag,
            "Last-Modified": formatdate(task.ends_wall, usegmt=True),
        }
        span: tuple[int, int] | None = None
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        honour_range = fault is None or fault.kind != "ignore_range"
        if range_header is not None and honour_range and if_range in (None, file.etag):
            try:
                span = parse_range(range_header, file.size)
            except UnsatisfiableRange:
                headers["Content-Range"] = f"bytes */{file.size}"
                return web.Response(status=416, headers=headers), 416
        start, stop = span or (0, file.size)
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{file.size}"
        response = web.StreamResponse(status=206 if span else 200, headers=headers)
        response.content_length = stop - start
        await response.prepare(request)
        if request.method == "HEAD":
            return response, response.status
        if fault is not None and fault.kind == "drop_after_bytes":
            # Send the first bytes, then cut: the client sees a short body.
            for chunk in file.chunks(start, min(stop, start + fault.byte_count)):
                await response.write(chunk)
            drop_connection(request)
            return response, response.status
        for chunk in file.chunks(start, stop):
            await response.write(chunk)
        await response.write_eof()
        return response, response.status
