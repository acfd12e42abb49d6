"""The model service's clients reuse one TLS context, made before any call.

httpx builds a TLS context (the CA bundle read) for every client it makes: 0.1-0.3 s of
CPU that, at a call's greeting, stalled the event loop that carries the call's audio.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from thinnest.providers import remote_tts
from thinnest.providers.modelservice import tls_context
from thinnest.providers.whisper import remote as whisper_remote


def _context_of(client: object) -> object:
    return client._transport._pool._ssl_context  # type: ignore[attr-defined]


def test_the_tts_client_of_each_call_loop_reuses_the_process_tls_context() -> None:
    async def client_of_this_loop() -> object:
        client = remote_tts._http()
        try:
            return _context_of(client)
        finally:
            await client.aclose()

    # Each call runs on an event loop of its own: each gets a client, none a new context.
    assert asyncio.run(client_of_this_loop()) is tls_context()
    assert asyncio.run(client_of_this_loop()) is tls_context()


def test_the_stt_client_reuses_the_process_tls_context() -> None:
    assert _context_of(whisper_remote._http()) is tls_context()


def test_warming_the_clients_imports_what_a_first_answer_would() -> None:
    code = (
        "import sys\n"
        "from thinnest.providers.modelservice import warm_clients\n"
        "assert 'openai.resources.chat.completions' not in sys.modules\n"
        "warm_clients()\n"
        "assert 'openai.resources.chat.completions' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
