"""The Pipecat peer of ``thinnest bench latency``: one bot process per call, its own venv.

``pipecat-ai`` pins ``protobuf`` and ``livekit`` versions that clash with ours, so it lives
in ``.venv-pipecat`` (``scripts/setup.sh --peers``, or ``--test``; pinned with hashes in
``requirements/pipecat.lock``) and the bot (:file:`pipecat_bot.py`, which imports nothing of
ours) runs there as a child process. For each call the bench creates a room, starts the bot
in it with a token of its own, and lets the scripted caller join as it does for the other
systems. The bot runs Pipecat's LiveKit transport, Silero VAD and fake STT, LLM and TTS
services with the same known delays as our ``fixed`` providers, so the comparison is the
frameworks' own cost. Only the ``fixed`` stack: Pipecat has no in-process llama.cpp LLM,
so an ``offline`` run would not compare the same models.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from pathlib import Path

from thinnest.errors import UnavailableError

__all__ = ["BOT", "PipecatBot", "bot_token", "find_python", "require_python"]

BOT = Path(__file__).with_name("pipecat_bot.py")
#: Where ``scripts/setup.sh --peers`` puts the peer's virtualenv (the source checkout's root).
DEFAULT_VENV = Path(__file__).resolve().parents[3] / ".venv-pipecat"
SETUP_HINT = "install it with `scripts/setup.sh --peers` (or leave out --pipecat)"


def find_python(explicit: Path | None = None) -> Path | None:
    """The Python of the Pipecat virtualenv: ``explicit``, ``$THINNEST_PIPECAT_PYTHON``, or
    ``.venv-pipecat`` in the source checkout (or the working directory); None if absent."""
    candidates = [explicit] if explicit else []
    if os.environ.get("THINNEST_PIPECAT_PYTHON"):
        candidates.append(Path(os.environ["THINNEST_PIPECAT_PYTHON"]))
    candidates += [DEFAULT_VENV / "bin" / "python", Path.cwd() / ".venv-pipecat" / "bin" / "python"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def bot_token(api_key: str, api_secret: str, room: str, identity: str) -> str:
    """A token for the bot: join ``room``, publish any audio, subscribe, send data."""
    from livekit import api

    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    token = api.AccessToken(api_key, api_secret).with_identity(identity).with_grants(grants)
    return token.to_jwt()


class PipecatBot:
    """One call's bot process. ``await start(...)``, then the call, then ``await finish()``."""

    def __init__(self, python: Path, workdir: Path) -> None:
        self.python = python
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None
        self.log = workdir / f"pipecat-{secrets.token_hex(3)}.log"

    async def start(self, *, url: str, token: str, delays: dict[str, int], greeting: str) -> None:
        """Start the bot in the room ``token`` admits it to, with our ``fixed`` providers'
        delays and defaults (transcript, reply, tone)."""
        from thinnest.providers.fixed import FixedLLMOptions, FixedSTTOptions, FixedTTSOptions

        tts = FixedTTSOptions()
        args = [
            str(BOT),
            f"--url={url}",
            f"--token={token}",
            f"--stt-delay-ms={delays['stt']}",
            f"--llm-ttft-ms={delays['llm_ttft']}",
            f"--tts-ttfb-ms={delays['tts_ttfb']}",
            f"--vad-stop-ms={delays['vad_silence']}",
            f"--transcript={FixedSTTOptions().text}",
            f"--reply={FixedLLMOptions().reply}",
            f"--ms-per-char={tts.ms_per_char}",
            f"--frequency={tts.frequency}",
            f"--greeting={greeting}",
        ]
        # Not our environment: the peer's venv must not see our site-packages or settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("THINNEST_", "PYTHON"))}
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(self.python),
                *args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    async def finish(self, grace: float = 15.0) -> int | None:
        """Wait for the bot to leave after the caller hung up; stop it if it does not."""
        proc = self.proc
        if proc is None:
            return None
        try:
            return await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return None


def require_python(explicit: Path | None) -> Path:
    python = find_python(explicit)
    if python is None:
        raise UnavailableError(f"the Pipecat peer's virtualenv is missing: {SETUP_HINT}")
    return python
