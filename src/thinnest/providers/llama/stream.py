"""One answer of the ``llama`` LLM: text streamed as it comes, a tool call held back.

The model answers a tool call as JSON text, which :mod:`thinnest.providers._toolcalls`
parses and validates into livekit-agents function calls. An invalid call is retried once
with the error shown to the model; a second failure becomes a short spoken apology.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from livekit.agents import APIConnectOptions, llm

from thinnest.errors import ProviderError
from thinnest.providers import _toolcalls
from thinnest.providers._threads import iterate_in_thread
from thinnest.providers.llama.calls import answered_this_turn, is_repeat, looks_like_json_call
from thinnest.providers.llama.prompt import render_prompt, retry_turn

if TYPE_CHECKING:
    from thinnest.providers.llama.llm import LlamaLLM

__all__ = ["APOLOGY", "LlamaStream"]

APOLOGY = "Sorry, I could not do that."


class LlamaStream(llm.LLMStream):
    """One answer: its text, or its validated tool calls, then its token counts."""

    def __init__(
        self,
        llm_: LlamaLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(llm_, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._llama = llm_
        self._id = uuid.uuid4().hex

    def _send(
        self,
        *,
        content: str | None = None,
        calls: list[llm.FunctionToolCall] | None = None,
        usage: llm.CompletionUsage | None = None,
    ) -> None:
        delta = None
        if content or calls:
            delta = llm.ChoiceDelta(role="assistant", content=content, tool_calls=calls or [])
        self._event_ch.send_nowait(llm.ChatChunk(id=self._id, delta=delta, usage=usage))

    async def _complete(self, prompt: str) -> tuple[str, str, int]:
        """Generate, streaming plain text as it comes but holding back what may be a call.

        Returns:
            The whole reply, its part not streamed yet, and its number of tokens.
        """
        tag = _toolcalls.OPEN_TAG
        text, spoken, held, tokens = "", 0, False, 0
        async for piece in iterate_in_thread(lambda: self._llama.generate(prompt)):
            tokens += 1
            text += piece
            head = text.lstrip()
            if held or not head:
                continue
            if spoken == 0:
                if head[0] in "{[`" or head.startswith(tag):
                    held = True
                    continue
                if tag.startswith(head):
                    continue  # may still become "<tool_call>"
            at = text.find(tag, spoken)
            if at != -1:
                held = True
                end = at
            else:
                # Keep back a trailing "<tool_c" that the next token may complete.
                last = text.rfind("<", spoken)
                end = last if last != -1 and tag.startswith(text[last:]) else len(text)
            if end > spoken:
                self._send(content=text[spoken:end])
                spoken = end
        return text, text[spoken:], tokens

    async def _run(self) -> None:
        head, turns = render_prompt(self._chat_ctx, self._tools)
        prompt, prompt_tokens = self._llama.fit_prompt(head, turns)
        completion_tokens = 0
        try:
            for attempt in range(2):
                text, rest, tokens = await self._complete(prompt)
                completion_tokens += tokens
                if not rest.strip():
                    break
                if not self._tools:
                    self._send(content=rest)
                    break
                result = _toolcalls.parse(rest, self._tools)
                answered = answered_this_turn(self._chat_ctx)
                if result.calls and all(is_repeat(c, answered) for c in result.calls):
                    # The call whose result it was just given, again: a loop, not a question.
                    result.calls, result.error = (
                        [],
                        (
                            f"{result.calls[0].name} was already called with these arguments and "
                            "its result is above. Answer in words"
                        ),
                    )
                if result.calls:
                    self._send(calls=result.calls)
                    break
                if not (result.is_tool_call or looks_like_json_call(rest)):
                    self._send(content=rest)
                    break
                if attempt == 1:
                    self._send(content=APOLOGY)
                    break
                error = result.error or "that is not a valid tool call"
                # One retry, showing the model what was wrong with its call.
                prompt += retry_turn(text, error)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"llama.cpp failed: {exc}", retryable=False) from exc
        self._send(
            usage=llm.CompletionUsage(
                completion_tokens=completion_tokens,
                prompt_tokens=prompt_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
        )
