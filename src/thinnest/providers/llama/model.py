"""The GGUF model loaded by llama.cpp: one per process, its generations taking turns."""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import TYPE_CHECKING

from thinnest.providers import _cpuidle
from thinnest.providers._extras import require

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["MODEL", "Model", "load"]

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


class Model:
    """A loaded model, the lock its generations take turns at, and when it was last busy."""

    def __init__(self, llama: Llama) -> None:
        self.llama = llama
        self.lock = threading.Lock()
        self.busy_until = 0.0  # time.monotonic() when its last generation ended

    def size_batch_threads(self) -> None:
        """Read the next prompt with as many threads as cores are free (``batch_threads`` 0).

        Free: idle over the sampler's last period, or busy only with this model's own
        previous generation (a prompt that follows an answer at once).
        """
        llama = self.llama
        free = _cpuidle.idle_cores() or 0
        if time.monotonic() - self.busy_until < 2 * _cpuidle.PERIOD:
            free += llama.n_threads
        batch = max(llama.n_threads, min(free, len(os.sched_getaffinity(0))))
        if batch != llama.n_threads_batch:
            llama._ctx.set_n_threads(llama.n_threads, batch)
            llama.n_threads_batch = llama.context_params.n_threads_batch = batch


@functools.lru_cache(maxsize=2)
def load(path: str, context_tokens: int, threads: int, batch_threads: int = 0) -> Model:
    llama_cpp = require("llama_cpp", extra="llama", provider="llama")
    # llama.cpp's threads spin at a barrier per token: with one core busy elsewhere (STT,
    # TTS, VAD of the same call) a thread per core collapses from ~18 to ~2 tokens/s on
    # two cores. Leave one core to the rest of the pipeline.
    n_threads = threads or max(1, len(os.sched_getaffinity(0)) - 1)
    model = llama_cpp.Llama(
        model_path=path,
        n_ctx=context_tokens,
        n_threads=n_threads,
        n_threads_batch=batch_threads or n_threads,  # auto: set per prompt, see generate()
        n_batch=512,
        verbose=False,
    )
    model.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=256 << 20))
    return Model(model)
