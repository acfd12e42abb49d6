"""A worker's capacity: set, or counted from the machine at a call's measured cost."""

from __future__ import annotations

import os
import types

from thinnest.config import Settings
from thinnest.engine.worker import CORES_PER_CALL, capacity


def test_a_set_capacity_wins() -> None:
    assert capacity(Settings(worker_max_jobs=7)) == 7


def test_the_default_follows_the_cores_and_shared_models_hold_more_calls() -> None:
    cores = len(os.sched_getaffinity(0))
    shared = capacity(Settings(models_url="http://127.0.0.1:8790"))
    in_process = capacity(Settings())
    assert 1 <= in_process <= shared <= max(1, int(cores / CORES_PER_CALL))


def test_job_processes_inherit_the_model_service_client_from_the_forkserver() -> None:
    """With shared model services, importing the LLM client (livekit-plugins-openai) was
    2 of a job process's 2.6 prewarm CPU-seconds: the forkserver imports it once."""
    from thinnest.engine.worker import build_server

    def preloaded(**fields: object) -> list[str]:
        settings = Settings(livekit_api_key="k", livekit_api_secret="s" * 32, **fields)
        return build_server(settings)._preload_modules

    assert "livekit.plugins.openai" in preloaded(models_url="http://127.0.0.1:8790")
    assert "livekit.plugins.openai" not in preloaded()  # in-process models: not needed
    assert "thinnest.engine.warmup" in preloaded()


def test_calls_being_accepted_count_as_calls_not_as_half_the_worker() -> None:
    """livekit-agents weighs each call it is accepting (said yes to, not yet running) at the
    load threshold over the idle processes when no call runs: with 2 idle processes, two
    calls being accepted made the worker refuse a third offered in that moment, and LiveKit
    does not offer a refused call again. The worker refuses only when its slots are taken."""
    from livekit.agents import AgentServer

    from thinnest.engine.worker import build_server

    settings = Settings(
        livekit_api_key="k",
        livekit_api_secret="s" * 32,
        worker_max_jobs=4,
        worker_idle_processes=2,
    )
    server = build_server(settings)
    # What `run(devmode=False)` sets up; its pool of job processes runs no call yet.
    server._devmode = False
    server._proc_pool = types.SimpleNamespace(processes=[])
    for accepting, available in ((0, True), (2, True), (3, True), (4, False)):
        server._reserved_slots = accepting
        assert server._is_available() is available, accepting
    # livekit-agents' own estimate (what the worker did before): full at two.
    stock = AgentServer.__new__(AgentServer)
    stock.__dict__.update(server.__dict__)
    stock._worker_load = 0.0  # no call running
    stock._reserved_slots = 2
    assert stock._is_available() is False


def test_a_call_already_running_but_still_reserved_counts_once() -> None:
    """A call's job runs a moment before livekit-agents frees the slot it reserved: counted
    twice, a worker with one call starting and three being accepted refused a free slot."""
    from thinnest.engine.worker import Claims, build_server

    claims = Claims()
    settings = Settings(livekit_api_key="k", livekit_api_secret="s" * 32, worker_max_jobs=4)
    server = build_server(settings, claims=claims)
    server._devmode = False

    def running(room: str) -> types.SimpleNamespace:
        job = types.SimpleNamespace(
            job=types.SimpleNamespace(room=types.SimpleNamespace(name=room))
        )
        return types.SimpleNamespace(running_job=job)

    server._proc_pool = types.SimpleNamespace(processes=[running("session_a")])
    claims.rooms |= {"session_a", "session_b", "session_c"}  # a runs; b and c are accepted
    server._reserved_slots = 3  # a's reservation is not freed yet
    assert server.calls_taken() == 3 and server._is_available()
    server._reserved_slots = 4  # a fourth offer said yes to, before its request reached Claims
    assert server.calls_taken() == 4 and not server._is_available()
