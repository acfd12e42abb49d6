"""A recorded call's audio kept: the session's recording moved into the recordings dir."""

from __future__ import annotations

import asyncio

from livekit.agents import AgentSession, JobContext

from thinnest.config import Settings
from thinnest.engine.persistence import CallStore
from thinnest.log import logger
from thinnest.store.files import private_copy

__all__ = ["keep_recording"]

log = logger.getChild("engine")


async def keep_recording(
    ctx: JobContext, session: AgentSession, store: CallStore, settings: Settings, session_id: str
) -> None:
    """Move the session's stereo recording (user left, agent right) into the recordings dir,
    with the wall-clock time of its first sample (the console follows the transcript by it)."""
    # livekit-agents keeps its recorder private; it forgets it on close, so read it first.
    recorder = getattr(session, "_recorder_io", None)
    started_at: float | None = getattr(recorder, "recording_started_at", None)
    await session.aclose()
    source = ctx.session_directory / "audio.ogg"
    for _ in range(50):  # the recorder flushes its last block as the session closes
        if source.exists():
            break
        await asyncio.sleep(0.1)
    if not source.exists():
        log.warning("session %s: no recording was produced", session_id)
        return
    target = await asyncio.to_thread(
        private_copy, source, settings.resolved_recordings_dir, f"{session_id}.ogg"
    )
    await store.set_recording(str(target.resolve()), started_at=started_at)
