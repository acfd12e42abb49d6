"""``thinnest models``: start the shared models, keep the LLM server alive, serve HTTP.

The HTTP server answers at once (``/healthz`` says ``starting`` until every model is in
memory); the models load beside it. A llama-server that dies is started again; while it
is down its part of ``/healthz`` is ``down`` and LLM requests get 503 at once, so calls
apologise instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from thinnest.config import Settings
from thinnest.log import logger

log = logger.getChild("models")

#: Seconds between looks at the LLM server's health.
_WATCH_INTERVAL = 1.0
#: Longest pause between two restarts of an LLM server that keeps failing.
_MAX_BACKOFF = 30.0


class LlmSupervisor:
    """Runs the llama-server child and starts it again when it dies."""

    def __init__(self, settings: Settings) -> None:
        from thinnest.modelsvc.llama_server import LlamaServer

        self._settings = settings
        self._server: Any = LlamaServer(settings)
        self.state = "starting"
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-supervisor", daemon=True)

    @property
    def url(self) -> str | None:
        return self._server.url if self.state == "ok" else None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._server.start()
            except Exception as exc:
                self.state = "down"
                log.error("the LLM server did not start: %s; next try in %.0f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(2 * backoff, _MAX_BACKOFF)
                continue
            self.state, backoff = "ok", 1.0
            log.info("the LLM server is up at %s", self._server.url)
            while not self._stop.wait(_WATCH_INTERVAL):
                if not self._server.healthy():
                    break
            if self._stop.is_set():
                break
            self.state = "down"
            self.restarts += 1
            log.error("the LLM server stopped; starting it again (restart %d)", self.restarts)
            self._server.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._server.stop()


def _load_speech(speech: Any, state: dict[str, str]) -> None:
    started = time.monotonic()
    try:
        speech.preload()
    except Exception as exc:
        log.error("the speech models did not load: %s", exc)
        state["speech"] = "down"
        return
    state["speech"] = "ok"
    log.info("speech models loaded in %.1f s", time.monotonic() - started)


def run_models(settings: Settings) -> None:
    """Serve the shared models on ``models_host:models_port`` until SIGTERM / Ctrl-C."""
    import uvicorn

    from thinnest.modelsvc.app import create_app
    from thinnest.modelsvc.speech import SpeechService

    # Nothing downloads at run time: the models ship in installed packages. The service
    # builds the in-process providers: it must not be a client of itself.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per health probe otherwise
    local = settings.model_copy(update={"models_url": None})
    llm = LlmSupervisor(local)
    speech = SpeechService(local)
    speech_state = {"speech": "starting"}

    def health() -> dict[str, str]:
        parts = {"llm": llm.state}
        if speech_state["speech"] == "ok":
            parts.update(speech.health())
        else:
            parts.update(stt=speech_state["speech"], tts=speech_state["speech"])
        return parts

    app = create_app(
        llm_url=lambda: llm.url,
        health=health,
        speech_router=speech.router(),
        timeout=settings.provider_timeout * 6,
        slots=settings.models_llm_slots,
    )
    # On shutdown, inside the server: uvicorn re-raises SIGTERM once it has stopped, which
    # would end the process before code after it runs (and orphan the LLM server).
    app.router.on_shutdown.extend([_in_thread(llm.stop), _in_thread(speech.close)])
    llm.start()
    loader = threading.Thread(target=_load_speech, args=(speech, speech_state), daemon=True)
    loader.start()
    try:
        uvicorn.run(
            app,
            host=settings.models_host,
            port=settings.models_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    finally:  # uvicorn could not start (its port taken, say)
        llm.stop()
        speech.close()


def _in_thread(stop: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await asyncio.to_thread(stop)

    return run
