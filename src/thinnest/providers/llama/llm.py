"""The ``llama`` LLM: llama.cpp as a livekit-agents ``llm.LLM``.

One model is loaded per process and generation is serialised by a lock (llama.cpp
contexts are not thread-safe): concurrent calls in one worker process take turns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from thinnest.config import Settings
from thinnest.providers import models
from thinnest.providers.llama.model import MODEL, load
from thinnest.providers.llama.options import LlamaOptions
from thinnest.providers.llama.prompt import STOP, render_prompt
from thinnest.providers.llama.stream import LlamaStream

__all__ = ["LlamaLLM", "build"]


class LlamaLLM(llm.LLM):
    """llama.cpp as a livekit-agents ``llm.LLM``, with JSON-text tool calls."""

    def __init__(self, *, options: LlamaOptions, settings: Settings) -> None:
        """Load (or reuse) the model; the GGUF is verified first.

        Raises:
            ConfigError: llama-cpp-python or the model packages are missing, or the cache
                is corrupt.
        """
        super().__init__()
        self._opts = options
        directory = models.prepare(MODEL, settings=settings)
        self._model = load(
            str(directory / "model.gguf"),
            options.context_tokens,
            options.threads,
            options.batch_threads,
        )

    @property
    def model(self) -> str:
        return "qwen2.5-coder-0.5b-instruct"

    @property
    def provider(self) -> str:
        return "llama.cpp"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        offered = list(tools or []) if tool_choice != "none" else []
        return LlamaStream(self, chat_ctx=chat_ctx, tools=offered, conn_options=conn_options)

    def fit_prompt(self, head: str, turns: list[str]) -> tuple[str, int]:
        """Join the prompt, dropping the oldest turns until it fits the context window.

        Returns:
            The prompt (ending in an open assistant turn) and its length in tokens.
        """
        budget = self._opts.context_tokens - self._opts.max_tokens
        tokenize = self._model.llama.tokenize
        while True:
            prompt = head + "".join(turns) + "<|im_start|>assistant\n"
            count = len(tokenize(prompt.encode(), special=True))
            if count <= budget or not turns:
                return prompt, count
            turns = turns[1:]

    async def prefill(self, chat_ctx: llm.ChatContext, tools: Sequence[llm.Tool] = ()) -> None:
        """Read the prompt of ``chat_ctx`` (instructions, tools, turns) into the prompt cache.

        One token is generated and dropped: llama.cpp keeps the state of the prompt, so the
        next answer that shares its beginning reads only what is new.
        """
        head, turns = render_prompt(chat_ctx, list(tools))
        prompt, _tokens = self.fit_prompt(head, turns)

        def read() -> None:
            for _piece in self.generate(prompt, max_tokens=1):
                pass

        await asyncio.to_thread(read)

    def generate(self, prompt: str, *, max_tokens: int | None = None) -> Iterator[str]:
        """Stream the completion of ``prompt`` as text pieces (blocking; one per token)."""
        opts = self._opts
        with self._model.lock:
            if not opts.batch_threads:
                self._model.size_batch_threads()
            chunks: Iterator[Any] = self._model.llama.create_completion(  # type: ignore[assignment]
                prompt,
                max_tokens=max_tokens or opts.max_tokens,
                temperature=opts.temperature,
                seed=opts.seed,
                stop=STOP,
                stream=True,
            )
            try:
                for chunk in chunks:
                    yield chunk["choices"][0]["text"]
            finally:
                self._model.busy_until = time.monotonic()


def build(options: LlamaOptions, settings: Settings) -> Any:
    """Factory of the ``llama`` LLM."""
    return LlamaLLM(options=options, settings=settings)
