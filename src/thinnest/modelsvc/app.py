"""The model service's HTTP face: health, the speech endpoints, and the LLM passed through.

``/v1/chat/completions`` and ``/v1/models`` go to the llama-server child (its answers
streamed as they come), so every client speaks OpenAI's API to one URL. A chat request that
names its call (OpenAI's ``prompt_cache_key``) is pinned to that call's slot
(:class:`~thinnest.modelsvc.slots.SlotAffinity`), so its prompt stays cached.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from thinnest.api.errors import error_response, install
from thinnest.log import logger
from thinnest.modelsvc.slots import SlotAffinity

log = logger.getChild("models")

#: Headers of the LLM's answer that describe the hop, not the content.
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def create_app(
    *,
    llm_url: Callable[[], str | None],
    health: Callable[[], dict[str, str]],
    speech_router: Any = None,
    timeout: float = 120.0,
    slots: int = 0,
) -> FastAPI:
    """The service's app.

    Args:
        llm_url: the llama-server's base URL now (None while it is down or restarting).
        health: each part's state (``{"llm": "ok", "stt": "ok", "tts": "down"}``).
        speech_router: the speech endpoints' ``APIRouter`` (none: LLM only).
        timeout: longest silence of the LLM mid-answer before the request fails.
        slots: the LLM server's parallel slots, to keep each call on one; 0: requests are
            passed on as they are.
    """
    app = FastAPI(title="Thinnest model service", docs_url=None, redoc_url=None)
    install(app)
    client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0))
    app.router.on_shutdown.append(client.aclose)
    if speech_router is not None:
        app.include_router(speech_router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        parts = health()
        ok = all(state == "ok" for state in parts.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "services": parts},
            status_code=200 if ok else 503,
        )

    affinity = SlotAffinity(slots) if slots else None

    def pinned(content: bytes) -> tuple[bytes, int | None]:
        """The request pinned to its call's slot, if it names a call and no slot."""
        if affinity is None:
            return content, None
        try:
            data = json.loads(content)
        except ValueError:
            return content, None  # the server says what is wrong with it
        call = data.get("prompt_cache_key") if isinstance(data, dict) else None
        if not isinstance(call, str) or not call or "id_slot" in data:
            return content, None
        data["id_slot"] = slot = affinity.slot_for(call)
        return json.dumps(data).encode(), slot

    async def forward(request: Request, path: str) -> Response:
        base = llm_url()
        if base is None:
            return error_response(
                503, "llm_unavailable", "the LLM server is down or restarting; try again shortly"
            )
        content, slot = await request.body(), None
        if path == "/v1/chat/completions":
            content, slot = pinned(content)
        upstream = client.build_request(
            request.method,
            f"{base}{path}",
            content=content,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        try:
            try:
                answer = await client.send(upstream, stream=True)
            except httpx.RemoteProtocolError:
                # A kept-alive connection the server had closed (it does after an answer
                # the caller hung up on, as the engine does with every cancelled draft):
                # nothing was read, so once more on a new connection.
                answer = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            log.warning("the LLM server did not answer: %r", exc)
            return error_response(503, "llm_unavailable", f"the LLM server did not answer: {exc}")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            except httpx.HTTPError as exc:  # the server died mid-answer: end the stream
                log.warning("the LLM server broke off an answer: %r", exc)
            finally:
                await answer.aclose()

        headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
        if slot is not None:
            headers["x-llm-slot"] = str(slot)
        return StreamingResponse(body(), status_code=answer.status_code, headers=headers)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        """OpenAI's chat completions, answered by the shared LLM (streamed when asked)."""
        return await forward(request, "/v1/chat/completions")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        """The LLM's model name."""
        return await forward(request, "/v1/models")

    return app
