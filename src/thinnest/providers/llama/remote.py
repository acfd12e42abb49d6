"""The ``llama`` LLM as a client of the shared model service (``THINNEST_MODELS_URL``).

The service runs llama.cpp's ``llama-server`` with the same model; this client speaks its
OpenAI-compatible ``/v1/chat/completions`` through livekit-plugins-openai, the code path of
any cloud LLM. The messages are the ones the in-process provider renders, so the model sees
the same prompt either way: tools described in the system prompt in Qwen's convention
(:data:`~thinnest.providers.llama.prompt._TOOLS_PROMPT`), past calls not shown, only their
results, as facts in the user's turn (shown its own calls, the model repeats them).

Not the server's native tool calling (``tools`` in the request, the GGUF's template, a lazy
grammar): the 0.5B model writes its calls as bare JSON text there too, never inside the tags
that switch the grammar on, and measured greedy on four turns the native path called the tool
again after its result (then apologised) where this prompt answered in words. So a reply that
may be a call is held back, parsed and validated by :mod:`thinnest.providers._toolcalls` (one
retry shown the error, then a short apology); plain text streams through as it comes. A call
the server parsed itself would pass through as it is (``native_tools=True``, for a larger
model behind ``THINNEST_MODELS_URL``).

``prefill`` (the engine calls it while the caller hears the greeting) has the server read a
call's prompt into a slot's cache, so the first answer reads only the caller's words.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, APIStatusError, llm
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from thinnest.config import Settings
from thinnest.errors import ConfigError
from thinnest.providers import _toolcalls
from thinnest.providers._extras import require
from thinnest.providers.llama.calls import answered_this_turn, is_repeat, looks_like_json_call
from thinnest.providers.llama.options import LlamaOptions
from thinnest.providers.llama.prompt import chat_turns, clean
from thinnest.providers.llama.stream import APOLOGY

__all__ = ["SERVED_MODEL", "RemoteLlamaLLM", "build_remote", "flat_chat"]

#: The name the model service serves the model under (llama-server's ``--alias``).
SERVED_MODEL = "qwen2.5-coder-0.5b-instruct"
#: Tokens of one server slot's context (``thinnest models`` gives each slot the default).
SLOT_CONTEXT = LlamaOptions.model_fields["context_tokens"].default
_CHARS_PER_TOKEN = 3


def _estimate(text: str) -> int:
    """Tokens of a ChatML turn, over-estimated: Qwen's tokenizer makes about 3.1 characters
    a token of a chat full of numbers and more of plain English; 6 for the turn's markers."""
    return len(text) // _CHARS_PER_TOKEN + 6


def flat_chat(
    chat_ctx: llm.ChatContext,
    tools: list[llm.Tool] | None = None,
    *,
    budget: int | None = None,
) -> llm.ChatContext:
    """The chat as the 0.5B model answers it best: one system message, no past calls.

    A call's result joins the user's turn it answers as a plain fact, with the request to
    answer in words; consecutive turns of one side are joined (ChatML renders as the
    in-process provider's :func:`~thinnest.providers.llama.prompt.render_prompt`). The
    oldest turns are dropped until the prompt's estimated tokens fit ``budget`` (the last
    turn stays): the server refuses a prompt longer than its slot's context.
    """
    head, turns = chat_turns(chat_ctx, tools or [])
    if budget is not None:
        size = _estimate(head) + sum(_estimate(text) for _, text in turns)
        while size > budget and len(turns) > 1:
            size -= _estimate(turns.pop(0)[1])
    flat = llm.ChatContext()
    flat.add_message(role="system", content=head)
    for role, text in turns:
        flat.add_message(role="user" if role == "user" else "assistant", content=text)
    return flat


class RemoteLlamaLLM(llm.LLM):
    """The shared ``llama-server`` as a livekit-agents ``llm.LLM``, with JSON-text tool calls.

    Args:
        options: sampling (temperature, seed) and ``max_tokens`` go into each request; the
            context and threads are the server's (``thinnest models``).
        settings: ``models_url`` (the service or a llama-server itself: both serve ``/v1``)
            and ``provider_timeout`` (how long a stream may stay silent).
        native_tools: send the tools in the request for the server's template and grammar,
            instead of describing them in the system prompt (see the module's docstring).
    """

    def __init__(
        self, *, options: LlamaOptions, settings: Settings, native_tools: bool = False
    ) -> None:
        super().__init__()
        self.native_tools = native_tools
        if not settings.models_url:
            raise ConfigError("the remote llama LLM needs THINNEST_MODELS_URL")
        openai_plugin = require("livekit.plugins.openai", extra="cloud", provider="llama")
        # The plugin's HTTP client is httpx2's: an httpx.Timeout given to it is not applied.
        httpx2 = require("httpx2", extra="cloud", provider="llama")
        self.options = options
        self.client: llm.LLM = openai_plugin.LLM(
            model=SERVED_MODEL,
            base_url=settings.models_url.rstrip("/") + "/v1",
            api_key="no-key",  # the SDK refuses none; the service asks for none
            temperature=options.temperature,
            # A stream silent this long fails, and the session retries it or apologises.
            timeout=httpx2.Timeout(settings.provider_timeout, connect=5.0),
            max_retries=0,  # the session retries (conn_options), not the SDK as well
            extra_body={"seed": options.seed, "cache_prompt": True},
            # The service keeps this client's requests on one slot of the server, so a
            # redrafted answer reads only its new words (thinnest.modelsvc.slots).
            prompt_cache_key=f"call-{uuid.uuid4().hex}",
            _strict_tool_schema=False,
        )

    @property
    def model(self) -> str:
        return SERVED_MODEL

    @property
    def provider(self) -> str:
        return "llama-server"

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
        return RemoteLlamaStream(self, chat_ctx=chat_ctx, tools=offered, conn_options=conn_options)

    async def prefill(self, chat_ctx: llm.ChatContext, tools: Sequence[llm.Tool] = ()) -> None:
        """Have the server read a call's prompt (instructions, tools, greeting) while the
        caller hears the greeting: one token generated and dropped. The slot keeps it
        cached, and the first answer's request, which begins the same, is given that slot
        (llama-server picks the slot whose cache shares the longest beginning)."""
        offered = list(tools)
        native = self.native_tools
        budget = min(self.options.context_tokens, SLOT_CONTEXT) - self.options.max_tokens
        stream = self.client.chat(
            chat_ctx=flat_chat(chat_ctx, None if native else offered, budget=budget),
            tools=offered if native else [],
            conn_options=APIConnectOptions(max_retry=0),
            extra_kwargs={"max_completion_tokens": 1},
        )
        async with stream:
            async for _chunk in stream:
                pass

    async def aclose(self) -> None:
        await self.client.aclose()


class RemoteLlamaStream(llm.LLMStream):
    """One answer from the server: its text, or its validated tool calls, then its usage."""

    def __init__(
        self,
        llm_: RemoteLlamaLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(llm_, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._remote = llm_
        self._id = uuid.uuid4().hex
        # One attempt per request inside; this stream's own loop retries (conn_options).
        self._once = APIConnectOptions(
            max_retry=0, retry_interval=conn_options.retry_interval, timeout=conn_options.timeout
        )

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

    async def _complete(
        self, chat_ctx: llm.ChatContext
    ) -> tuple[str, str, list[llm.FunctionToolCall], llm.CompletionUsage | None]:
        """Stream one completion, speaking plain text as it comes, holding what may be a call.

        Returns:
            The whole reply, its part not streamed yet, the calls the server parsed itself,
            and the usage it reported.
        """
        tag = _toolcalls.OPEN_TAG
        text, spoken, held = "", 0, False
        calls: list[llm.FunctionToolCall] = []
        usage = None
        stream = self._remote.client.chat(
            chat_ctx=chat_ctx,
            tools=self._tools if self._remote.native_tools else [],
            conn_options=self._once,
            extra_kwargs={"max_completion_tokens": self._remote.options.max_tokens},
        )
        async with stream:
            async for chunk in stream:
                usage = chunk.usage or usage
                if chunk.delta is None:
                    continue
                calls.extend(chunk.delta.tool_calls)
                if not chunk.delta.content:
                    continue
                text += chunk.delta.content
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
                    # Keep back a trailing "<tool_c" that the next piece may complete.
                    last = text.rfind("<", spoken)
                    end = last if last != -1 and tag.startswith(text[last:]) else len(text)
                if end > spoken:
                    self._send(content=text[spoken:end])
                    spoken = end
        return text, text[spoken:], calls, usage

    async def _fitted(
        self, retry: list[tuple[str, str]]
    ) -> tuple[str, str, list[llm.FunctionToolCall], llm.CompletionUsage | None]:
        """:meth:`_complete` the chat (and the ``retry`` turns after it), its oldest turns
        dropped to fit a slot; halved again while the server says it is still too long
        (a script of fewer characters a token than the estimate's)."""
        opts = self._remote.options
        budget = min(opts.context_tokens, SLOT_CONTEXT) - opts.max_tokens
        tools = None if self._remote.native_tools else self._tools
        while True:
            chat_ctx = flat_chat(self._chat_ctx, tools, budget=budget)
            for role, content in retry:
                chat_ctx.add_message(role=role, content=content)  # type: ignore[arg-type]
            try:
                return await self._complete(chat_ctx)
            except APIStatusError as exc:
                too_long = exc.status_code == 400 and "context" in f"{exc.message} {exc.body}"
                if not too_long or budget < 256:
                    raise
                budget //= 2

    async def _run(self) -> None:
        prompt_tokens = completion_tokens = 0
        cached: int | None = None  # prompt tokens the server found in a slot's cache
        retry: list[tuple[str, str]] = []
        for attempt in range(2):
            text, rest, parsed, usage = await self._fitted(retry)
            if usage is not None:
                prompt_tokens = max(prompt_tokens, usage.prompt_tokens)
                cached = usage.prompt_cached_tokens if cached is None else cached
                completion_tokens += usage.completion_tokens
            if parsed:  # a call the server parsed itself (native_tools)
                self._send(calls=parsed)
                break
            if not rest.strip():
                break
            if not self._tools:
                self._send(content=rest)
                break
            result = _toolcalls.parse(rest, self._tools)
            if result.calls and all(
                is_repeat(c, answered_this_turn(self._chat_ctx)) for c in result.calls
            ):
                # The call whose result it was just given, again: a loop, not a question.
                name, result.calls = result.calls[0].name, []
                result.error = (
                    f"{name} was already called with these arguments and its result is "
                    "above. Answer in words"
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
            # One retry, showing the model what was wrong with its call.
            error = result.error or "that is not a valid tool call"
            retry = [
                ("assistant", clean(text)),
                (
                    "user",
                    f"Error: {error}. Call a listed tool with valid arguments, or answer in "
                    "plain words.",
                ),
            ]
        self._send(
            usage=llm.CompletionUsage(
                completion_tokens=completion_tokens,
                prompt_tokens=prompt_tokens,
                prompt_cached_tokens=cached or 0,
                total_tokens=prompt_tokens + completion_tokens,
            )
        )


def build_remote(options: LlamaOptions, settings: Settings) -> Any:
    """Remote factory of the ``llama`` LLM: a client of ``settings.models_url``."""
    return RemoteLlamaLLM(options=options, settings=settings)
