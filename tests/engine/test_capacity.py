"""A worker's capacity: set, or counted from the machine at a call's measured cost."""

from __future__ import annotations

import os

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
