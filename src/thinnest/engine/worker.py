"""``thinnest worker``: a livekit-agents worker for explicit dispatch under the agent name.

Jobs run in prewarmed child processes (models loaded once). SIGTERM / SIGINT drain the
worker: calls in progress finish, no new ones are taken.
"""

from __future__ import annotations

import asyncio
import os
import signal

from livekit.agents import AgentServer

from thinnest.config import Settings
from thinnest.engine.job import entrypoint, prewarm
from thinnest.log import logger

log = logger.getChild("engine")


def build_server(settings: Settings) -> AgentServer:
    key, secret = settings.livekit_credentials()
    server = AgentServer(
        ws_url=settings.livekit_url,
        api_key=key,
        api_secret=secret,
        setup_fnc=prewarm,
        num_idle_processes=settings.worker_idle_processes,
        initialize_process_timeout=120.0,
        # Capacity is counted in calls, not CPU: on a small machine the CPU is busy in any
        # call, and a CPU threshold would refuse work that fits.
        load_fnc=lambda srv: len(srv.active_jobs) / settings.worker_max_jobs,
        load_threshold=1.0,
        port=0,
        host="127.0.0.1",
        log_level=settings.log_level.upper(),
    )
    server.rtc_session(entrypoint, agent_name=settings.agent_name)
    return server


async def _serve(settings: Settings) -> None:
    server = build_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(server.run(devmode=False))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not run.done():
        log.info("draining the worker")
        try:
            await asyncio.wait_for(server.drain(timeout=30), 35)
        except TimeoutError:
            log.warning("drain timed out")
    await server.aclose()
    run.cancel()


def run_worker(settings: Settings) -> None:
    # Nothing downloads at run time: the models ship in installed packages.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(_serve(settings))
