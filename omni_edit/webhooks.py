"""Receiving provider callbacks in an aiohttp web app.

::

    receiver = CallbackReceiver(client)
    app = web.Application()
    receiver.setup(app, "/omni-edit/callback")

The receiver answers fast (the provider gives up after 10 s and retries only 3 times),
caps the body at 64 KiB (413 above), refuses non-JSON and non-task bodies with 400, and
hands the body to ``Client.handle_callback`` in the background. That call re-reads the
task from the API before any waiter hears of it, since callbacks carry no signature.
Polling stays on as the safety net for callbacks that never arrive.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ._client import Client
from ._constants import MAX_CALLBACK_BODY_BYTES
from ._exceptions import MalformedResponseError, OmniEditError
from ._wire.convert import decode_json, structure_task

__all__ = ["CallbackReceiver", "make_app"]

logger = logging.getLogger("omni_edit")

DEFAULT_PATH = "/omni-edit/callback"


class CallbackReceiver:
    """An aiohttp handler feeding callbacks to ``client.handle_callback``.

    ``max_pending`` bounds the verifications running at once: beyond it the receiver
    answers 503, and the provider's retry delivers the callback again later.
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
        except MalformedResponseError:
            return web.json_response({"error": "expected a task object as JSON"}, status=400)
        if len(self._jobs) >= self.max_pending:
            return web.json_response({"error": "busy, retry later"}, status=503)
        job = asyncio.get_running_loop().create_task(self._process(data, task_id))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return web.json_response({"received": True})

    async def _process(self, data: Any, task_id: str) -> None:
        try:
            await self.client.handle_callback(data, verify=self.verify)
        except OmniEditError as exc:
            # A forged or stale callback ends here: the API did not confirm it.
            logger.warning("callback for %s not applied: %s", task_id, exc)

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
