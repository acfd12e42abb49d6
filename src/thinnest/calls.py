"""``thinnest call``: start a session through the API and hold a call from the terminal."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from thinnest.client import SAMPLE_RATE, VoiceClient
from thinnest.errors import AuthError, NotFoundError, UnavailableError, ValidationError


async def start_session(api_url: str, api_key: str, agent: str) -> dict[str, str]:
    """``POST /voice/start``; API errors become our errors with the API's message."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        try:
            resp = await http.post(
                "/voice/start",
                json={"agent_id": agent},
                headers={"Authorization": f"Bearer {api_key}"},
            )
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"the API at {api_url} is not reachable: is `thinnest dev` running?"
            ) from exc
    if resp.status_code == 200:
        return dict(resp.json())
    try:
        error = resp.json()["error"]
        message, field = error["message"], error.get("field")
    except (ValueError, KeyError, TypeError):
        message, field = resp.text[:200], None
    kind = {401: AuthError, 404: NotFoundError, 503: UnavailableError}.get(
        resp.status_code, ValidationError
    )
    raise kind(f"{resp.status_code}: {message}", field=field)


async def run_call(
    api_url: str,
    api_key: str,
    agent: str,
    *,
    wav: Path | None,
    out: Path | None,
    hang_up_after: float,
    max_seconds: float,
    print_line: Callable[[str], None],
) -> int:
    """Hold one call; returns the exit code (0 when the call went through)."""
    started = await start_session(api_url, api_key, agent)
    print_line(f"session {started['session_id']}")
    deadline = time.monotonic() + max_seconds
    async with VoiceClient(started["livekit_url"], started["token"]) as client:

        def show(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == "transcript" and event.get("final", True):
                print_line(f"{event['role']:>5}: {event['text']}")
            elif kind == "tool_call":
                print_line(f" tool: {event['name']}({event['arguments']})")
            elif kind == "metrics":
                parts = [
                    f"{k}={v:.2f}s"
                    for k, v in event.items()
                    if isinstance(v, float) and not k.startswith("_")
                ]
                print_line(f"      ({', '.join(parts)})")
            elif kind == "call_ended":
                print_line(f"call ended: {event['reason']} after {event['duration']:.1f} s")

        client.listeners.append(show)
        try:
            await client.next_event(max_seconds, type="transcript", role="agent")
            await _wait_quiet(client, hang_up_after, deadline)
            if wav is not None:
                await client.play_wav(wav)
                spoke = client.speech_ended_at or time.monotonic()
                await client.next_event(
                    max(1.0, deadline - time.monotonic()), type="transcript", role="agent"
                )
                first = client.audio.first_voiced_after(spoke)
                if first is not None:
                    print_line(f"(end of your speech -> first agent audio: {first - spoke:.2f} s)")
                await _wait_quiet(client, hang_up_after, deadline)
        except TimeoutError:
            print_line("no answer from the agent in time; hanging up")
        finally:
            if out is not None:
                _save_wav(out, client.audio.pcm())
                print_line(f"agent audio saved to {out}")
    return 0


async def _wait_quiet(client: VoiceClient, quiet: float, deadline: float) -> None:
    """Until the agent has been silent for ``quiet`` seconds (or the deadline)."""
    while time.monotonic() < deadline:
        audio = client.audio
        voiced = [at for at, lv in zip(audio.arrivals, audio.levels, strict=True) if lv >= 300]
        # Silent frames may or may not keep arriving: what counts is the last voiced one.
        if voiced and time.monotonic() - voiced[-1] >= quiet:
            return
        await asyncio.sleep(0.2)


def _save_wav(path: Path, pcm: object) -> None:
    import numpy as np

    samples = np.asarray(pcm, dtype=np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
