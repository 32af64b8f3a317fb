"""Receiving provider callbacks in an aiohttp web app.

::

    receiver = CallbackReceiver(client)
    app = web.Application()
    receiver.setup(app, "/omni-edit/callback")

The receiver answers fast (the provider gives up after 10 s and retries only 3 times),
caps the body at 64 KiB (413 above), refuses non-JSON and non-task bodies with 400, and
hands the body to ``Client.handle_callback`` in the background. That call re-reads the
task from the API before any waiter hears of it, since callbacks carry no signature,
and only for tasks the client created or waits on: a forged callback for any other id
costs no request. Callbacks for a task already being handled are coalesced into it, so
a flood of repeats holds one job, not one per callback. Polling stays on as the safety
net for callbacks that never arrive.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ._client import Client
from ._constants import MAX_CALLBACK_BODY_BYTES
from ._exceptions import MalformedResponseError, OmniEditError, ValidationError
from ._redact import printable
from ._wire.convert import decode_json, structure_task

__all__ = ["CallbackReceiver", "make_app"]

logger = logging.getLogger("omni_edit")

DEFAULT_PATH = "/omni-edit/callback"


class CallbackReceiver:
    """An aiohttp handler feeding callbacks to ``client.handle_callback``.

    ``max_pending`` bounds the tasks being verified at once: beyond it the receiver
    answers 503, and the provider's retry delivers the callback again later. A callback
    for a task already being verified does not count: it is folded into that job.
    """

    def __init__(
        self,
        client: Client,
        *,
        verify: bool = True,
        max_body_bytes: int = MAX_CALLBACK_BODY_BYTES,
        max_pending: int = 256,
    ) -> None:
        self.client = client
        self.verify = verify
        self.max_body_bytes = max_body_bytes
        self.max_pending = max_pending
        self._jobs: set[asyncio.Task[None]] = set()
        # Per task being handled, the latest body received and how many have arrived:
        # its job handles the latest body until no newer one came in meanwhile.
        self._latest: dict[str, tuple[Any, int]] = {}
        self._warned_unknown = False

    def setup(self, app: web.Application, path: str = DEFAULT_PATH) -> None:
        """Route ``POST path`` to this receiver; its jobs end with the app."""
        app.router.add_post(path, self.handle)
        app.on_cleanup.append(self._cleanup)

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return web.json_response({"error": "body too large"}, status=413)
        body = await request.content.read(self.max_body_bytes + 1)
        if len(body) > self.max_body_bytes:
            return web.json_response({"error": "body too large"}, status=413)
        try:
            data: Any = decode_json(body)
            task_id = structure_task(data).id
        except MalformedResponseError as exc:
            # Debug only: anyone can post anything here, and a log is no place for a flood.
            logger.debug("callback refused (400): %s", printable(str(exc)))
            return web.json_response({"error": "expected a task object as JSON"}, status=400)
        pending = self._latest.get(task_id)
        if pending is not None:
            self._latest[task_id] = (data, pending[1] + 1)
            return web.json_response({"received": True})
        if len(self._jobs) >= self.max_pending:
            return web.json_response({"error": "busy, retry later"}, status=503)
        self._latest[task_id] = (data, 0)
        job = asyncio.get_running_loop().create_task(self._process(task_id))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return web.json_response({"received": True})

    async def _process(self, task_id: str) -> None:
        try:
            while True:
                data, count = self._latest[task_id]
                await self._apply(data, task_id)
                if self._latest[task_id][1] == count:
                    return
        finally:
            del self._latest[task_id]

    async def _apply(self, data: Any, task_id: str) -> None:
        try:
            await self.client.handle_callback(data, verify=self.verify)
        except ValidationError as exc:
            # Not a task of this client (or not a task id): forged or misrouted. Logged
            # loudly once only, so a flood of forgeries cannot flood the log either.
            level = logging.DEBUG if self._warned_unknown else logging.WARNING
            more = "" if self._warned_unknown else " (further ones are logged at DEBUG)"
            self._warned_unknown = True
            logger.log(level, "callback ignored: %s%s", printable(str(exc)), more)
        except OmniEditError as exc:
            # The API did not confirm it: a stale callback, or the API is failing.
            logger.warning(
                "callback for %s not applied: %s", printable(task_id), printable(str(exc))
            )

    async def _cleanup(self, _app: web.Application) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


def make_app(client: Client, path: str = DEFAULT_PATH, *, verify: bool = True) -> web.Application:
    """A web app that only receives callbacks, for ``aiohttp.web.run_app``."""
    app = web.Application(client_max_size=MAX_CALLBACK_BODY_BYTES)
    CallbackReceiver(client, verify=verify).setup(app, path)
    return app
