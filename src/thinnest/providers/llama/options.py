"""The options of the ``llama`` LLM."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LlamaOptions"]


class LlamaOptions(BaseModel):
    """Options of the ``llama`` LLM.

    Attributes:
        temperature: sampling temperature (low keeps tool calls well-formed).
        max_tokens: cap on one answer's length.
        context_tokens: the context window; older turns are dropped to fit.
        threads: CPU threads; 0 uses all cores but one (the rest of the pipeline needs it).
        batch_threads: CPU threads that read the prompt (the time to the first token); 0
            (auto): as many as cores are idle when the prompt comes, at least ``threads``.
            On 2 cores, 2 threads made the first token come in 160 ms instead of 298 ms with
            the other core idle, but in 562 ms instead of 335 ms with it busy (llama.cpp's
            threads wait for each other), hence the choice per prompt.
        seed: sampling seed, for reproducible answers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(200, ge=1, le=2048)
    context_tokens: int = Field(4096, ge=512, le=32768)
    threads: int = Field(0, ge=0, le=64)
    batch_threads: int = Field(0, ge=0, le=64)
    seed: int = Field(0, ge=0)
