"""``thinnest call``: start a session through the API and hold a call from the terminal.

The call leaves as soon as it has ended (``call_ended``, or the room closed), and its exit
code says whether an agent answered: 0 when the agent greeted (or, without a greeting,
joined) and answered the WAV if one was said, or when the call was ended normally after
the agent had spoken; 1 when no agent joined, greeted or answered within ``--max-seconds``,
or the call ended in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from livekit import rtc
from thinnest.client import SAMPLE_RATE, VoiceClient
from thinnest.contracts.session import EndReason
from thinnest.errors import AuthError, NotFoundError, UnavailableError, ValidationError

#: Call endings that mean the call did not go through (exit code 1).
FAILED_ENDINGS = (EndReason.ERROR, EndReason.NO_SHOW)


def check_wav(path: Path) -> None:
    """Refuse a file the call could not say, before a session is started for it.

    Raises:
        ValidationError: the file is missing, unreadable, not a WAV, not 16-bit PCM or empty.
    """
    hint = "give a 16-bit PCM WAV, e.g. `espeak-ng -w question.wav 'How are you?'`"
    if not path.exists():
        raise ValidationError(f"{path}: no such file; {hint}", field="wav")
    if not path.is_file():
        raise ValidationError(f"{path} is not a file; {hint}", field="wav")
    try:
        with wave.open(str(path), "rb") as wav:
            width, frames = wav.getsampwidth(), wav.getnframes()
            data = wav.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise ValidationError(f"{path} is not a PCM WAV file ({exc}); {hint}", field="wav") from exc
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}", field="wav") from exc
    if width != 2:
        raise ValidationError(
            f"{path} has {8 * width}-bit samples: 16-bit PCM is needed "
            f"(convert it with `sox {path.name} -b 16 out.wav`)",
            field="wav",
        )
    if not data:
        raise ValidationError(f"{path} holds no audio; {hint}", field="wav")


def check_out(path: Path) -> None:
    """Refuse an ``--out`` path the agent's audio could not be written to, before the call."""
    if path.is_dir():
        raise ValidationError(f"{path} is a directory: give a file name", field="out")
    if not path.parent.is_dir():
        raise ValidationError(f"cannot write {path}: no directory {path.parent}", field="out")


def _api_error(resp: httpx.Response) -> Exception:
    try:
        error = resp.json()["error"]
        message, field = error["message"], error.get("field")
    except (ValueError, KeyError, TypeError):
        message, field = resp.text[:200], None
    kind = {401: AuthError, 404: NotFoundError, 503: UnavailableError}.get(
        resp.status_code, ValidationError
    )
    return kind(f"{resp.status_code}: {message}", field=field)


async def _request(api_url: str, method: str, path: str, api_key: str, **kw: Any) -> httpx.Response:
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
            return await http.request(
                method, path, headers={"Authorization": f"Bearer {api_key}"}, **kw
            )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise UnavailableError(
            f"the API at {api_url} is not reachable ({exc}): is `thinnest dev` running?"
        ) from exc


async def start_session(api_url: str, api_key: str, agent: str) -> dict[str, str]:
    """``POST /voice/start``; API errors become our errors with the API's message."""
    resp = await _request(api_url, "POST", "/voice/start", api_key, json={"agent_id": agent})
    if resp.status_code == 200:
        return dict(resp.json())
    raise _api_error(resp)


async def agent_greets(api_url: str, api_key: str, agent: str) -> bool:
    """Whether the agent speaks first; True when the key may not read the agent."""
    resp = await _request(api_url, "GET", f"/agents/{agent}", api_key)
    if resp.status_code != 200:
        return True
    return bool(resp.json().get("greeting"))


class _Call:
    """One call in progress: prints its events and knows when it has ended."""

    def __init__(self, client: VoiceClient, print_line: Callable[[str], None]) -> None:
        self.client = client
        self.print_line = print_line
        self.ended = asyncio.Event()
        self.reason: str | None = None
        self.agent_spoke = False
        client.listeners.append(self.show)

    def show(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        line = self.print_line
        if kind == "transcript" and event.get("final", True):
            line(f"{event['role']:>5}: {event['text']}")
            if event.get("role") == "agent":
                self.agent_spoke = True
        elif kind == "tool_call":
            call = f"{event.get('name')}({json.dumps(event.get('arguments', {}))})"
            error = event.get("error")
            line(f" tool: {call} failed: {error}" if error else f" tool: {call}")
        elif kind == "error":
            line(f"error: {event.get('message')} ({event.get('code')})")
        elif kind == "metrics":
            parts = [
                f"{k}={v:.2f}s"
                for k, v in event.items()
                if isinstance(v, float) and not k.startswith("_")
            ]
            line(f"      ({', '.join(parts)})")
        elif kind == "call_ended":
            self.reason = str(event.get("reason"))
            line(f"call ended: {self.reason} after {float(event.get('duration', 0)):.1f} s")
            self.ended.set()

    async def step(self, work: Awaitable[Any], deadline: float) -> bool:
        """Run ``work``: True when it finished, False when the call ended or the deadline
        passed first (``work`` is cancelled then)."""
        task = asyncio.ensure_future(work)
        ending = [
            asyncio.ensure_future(self.ended.wait()),
            asyncio.ensure_future(self.client.disconnected.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                [task, *ending],
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for pending in (task, *ending):
                pending.cancel()
            await asyncio.gather(task, *ending, return_exceptions=True)
        if task in done:
            error = task.exception()
            if error is None:
                return True
            if not isinstance(error, TimeoutError):
                raise error
        if self.client.disconnected.is_set() and not self.ended.is_set():
            self.print_line("the call's room closed")
            self.ended.set()
        return False

    def outcome(self) -> int:
        """The exit code of a call that has ended."""
        if self.reason in FAILED_ENDINGS or not self.agent_spoke:
            return 1
        return 0


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
    """Hold one call; returns the exit code (see the module docstring)."""
    greets = await agent_greets(api_url, api_key, agent)
    started = await start_session(api_url, api_key, agent)
    print_line(f"session {started['session_id']}")
    deadline = time.monotonic() + max_seconds
    client = VoiceClient(started["livekit_url"], started["token"])
    try:
        await client.connect()
    except rtc.ConnectError as exc:
        with contextlib.suppress(Exception):
            await client.aclose()
        raise UnavailableError(
            f"could not join the call at {started['livekit_url']} ({exc}): is LiveKit reachable?"
        ) from exc
    call = _Call(client, print_line)
    try:
        return await _converse(call, wav, hang_up_after, deadline, max_seconds, greets)
    finally:
        await client.aclose()
        if out is not None:
            _save_wav(out, client.audio.pcm())
            print_line(f"agent audio saved to {out}")


async def _converse(
    call: _Call, wav: Path | None, quiet: float, deadline: float, max_seconds: float, greets: bool
) -> int:
    client = call.client
    first = (
        client.next_event(max_seconds, type="transcript", role="agent")
        if greets
        else client.next_event(max_seconds, type="agent_state", state="listening")
    )
    if not await call.step(first, deadline):
        if call.ended.is_set():
            return call.outcome()
        if client.agent_attributes():
            call.print_line(f"the agent joined but did not speak within {max_seconds:g} s")
        else:
            call.print_line(
                f"no agent answered within {max_seconds:g} s: is a `thinnest worker` running "
                "for this API (`thinnest dev` starts one)?"
            )
        return 1
    if not await call.step(_wait_quiet(client, quiet), deadline):
        return call.outcome() if call.ended.is_set() else 0
    if wav is None:
        return 0
    if not await call.step(client.play_wav(wav), deadline):
        if call.ended.is_set():
            return call.outcome()
        call.print_line(f"the call reached --max-seconds ({max_seconds:g} s); hanging up")
        return 1
    spoke = client.speech_ended_at or time.monotonic()
    answer = client.next_event(max_seconds, type="transcript", role="agent")
    if not await call.step(answer, deadline):
        if call.ended.is_set():
            return call.outcome()
        call.print_line(f"no answer from the agent within {max_seconds:g} s; hanging up")
        return 1
    first_audio = client.audio.first_voiced_after(spoke)
    if first_audio is not None:
        call.print_line(f"(end of your speech -> first agent audio: {first_audio - spoke:.2f} s)")
    await call.step(_wait_quiet(client, quiet), deadline)
    return call.outcome() if call.ended.is_set() else 0


async def _wait_quiet(client: VoiceClient, quiet: float) -> None:
    """Until the agent has been silent for ``quiet`` seconds."""
    since = time.monotonic()
    while True:
        audio = client.audio
        voiced = [at for at, lv in zip(audio.arrivals, audio.levels, strict=True) if lv >= 300]
        # Silent frames may or may not keep arriving: what counts is the last voiced one.
        if time.monotonic() - (voiced[-1] if voiced else since) >= quiet:
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
