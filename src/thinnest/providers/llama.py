"""Offline LLM ``llama``: llama-cpp-python with Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF).

The GGUF is joined from six PyPI data packages and checked by
:mod:`thinnest.providers.models`. The prompt is ChatML rendered here (not the GGUF's
Jinja template) so that it stays short and identical from turn to turn: llama.cpp reuses
the KV cache of the longest common prefix, and a RAM prompt cache keeps the state of
other conversations sharing the process's model, which keeps time to first token low.

Tools are described in the system prompt in Qwen's ``<tool_call>`` convention (the tags
are special tokens, dropped from the output text); the model answers a tool call as JSON
text, which :mod:`thinnest.providers._toolcalls` parses and validates into livekit-agents
function calls. An invalid call is retried once with the error shown to the model; a
second failure becomes a short spoken apology. Past calls are not shown to the model, only
their results, as plain facts in the user's turn (see :func:`render_prompt`): a model shown
call syntax in its own past answers writes it again, and the TTS would read it out.

One model is loaded per process and generation is serialised by a lock (llama.cpp
contexts are not thread-safe): concurrent calls in one worker process take turns.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.errors import ProviderError
from thinnest.providers import _cpuidle, _toolcalls, models
from thinnest.providers._extras import require
from thinnest.providers._threads import iterate_in_thread

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["DEFAULT_SYSTEM_PROMPT", "LlamaLLM", "LlamaOptions", "build", "render_prompt"]

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Answer in one or two short spoken sentences, "
    "without lists or markdown."
)
APOLOGY = "Sorry, I could not do that."
# Measured on the 0.5B model, greedy, over three questions with a tool result: this wording
# got three answers in words; "Answer my question in words." after "Information for your
# answer:" had it call the tool again, "Use this to answer..." had it read the JSON out.
_AFTER_TOOL = "Answer my question in words, without calling a tool."
_FOUND = "Facts:"
_FAILED = "This could not be found out:"
_SPECIAL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
_STOP = ["<|im_end|>", "<|endoftext|>", "<|im_start|>"]
_TOOLS_PROMPT = (
    "\n\n# Tools\nYou may call one of these tools (never name them to the user):\n"
    "<tools>\n{tools}\n</tools>\n"
    "To call a tool, reply with nothing else than:\n<tool_call>\n"
    '{{"name": <tool name>, "arguments": <JSON object>}}\n</tool_call>'
)


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


class _Model:
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
def _load(path: str, context_tokens: int, threads: int, batch_threads: int = 0) -> _Model:
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
    return _Model(model)


def _clean(text: str) -> str:
    for token in _SPECIAL:
        text = text.replace(token, "")
    return text


def render_prompt(
    chat_ctx: llm.ChatContext, tools: Sequence[llm.Tool], *, system_prompt: str | None = None
) -> tuple[str, list[str]]:
    """Render a chat as a ChatML prompt ending in an open assistant turn.

    Args:
        chat_ctx: the conversation; system/developer messages become the system prompt.
        tools: the function tools to describe.
        system_prompt: used when the chat has no system message.

    Returns:
        The system block and the later turns, each a complete ChatML segment (the caller
        drops the oldest turns to fit the context and appends the assistant opener).
    """
    system: list[str] = []
    turns: list[tuple[str, str]] = []

    def add(role: str, text: str) -> None:
        # A tool's result joins the user's turn it answers (it is rendered as the user's).
        side = "user" if role == "tool" else role
        if turns and ("user" if turns[-1][0] == "tool" else turns[-1][0]) == side:
            turns[-1] = (role, turns[-1][1] + "\n" + text)
        else:
            turns.append((role, text))

    for item in chat_ctx.items:
        if item.type == "message":
            text = _clean(item.text_content or "")
            if not text:
                continue
            if item.role in ("system", "developer"):
                system.append(text)
            elif item.role == "user":
                add("user", text)
            else:
                add("assistant", text)
        elif item.type == "function_call_output":
            # A past call is not shown, only its result, as a plain fact the user gives:
            # shown its own <tool_call> and a <tool_response>, the 0.5B model repeats the
            # call forever instead of answering; shown "I called order_status({...})." as
            # its own words, it says that aloud in later answers.
            fact = _FAILED if item.is_error else _FOUND
            add("tool", f"{fact} {_clean(item.output)}")

    head = "\n".join(system) or system_prompt or DEFAULT_SYSTEM_PROMPT
    described = _toolcalls.describe_tools(tools)
    if described:
        head += _TOOLS_PROMPT.format(
            tools="\n".join(json.dumps(t, ensure_ascii=False) for t in described)
        )
    rendered = []
    for role, text in turns:
        if role == "tool":
            role, text = "user", text + "\n" + _AFTER_TOOL
        rendered.append(f"<|im_start|>{role}\n{text}<|im_end|>\n")
    return f"<|im_start|>system\n{head}<|im_end|>\n", rendered


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
        self._model = _load(
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
        return _LlamaStream(self, chat_ctx=chat_ctx, tools=offered, conn_options=conn_options)

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
                stop=_STOP,
                stream=True,
            )
            try:
                for chunk in chunks:
                    yield chunk["choices"][0]["text"]
            finally:
                self._model.busy_until = time.monotonic()


class _LlamaStream(llm.LLMStream):
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
                prompt += (
                    f"{_clean(text)}<|im_end|>\n<|im_start|>user\n<tool_response>\nError: "
                    f"{error}. Call a listed tool with valid arguments, or answer in plain "
                    "words.\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
                )
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


def _arguments(call: llm.FunctionToolCall | llm.FunctionCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def answered_this_turn(chat_ctx: llm.ChatContext) -> list[tuple[str, dict[str, Any]]]:
    """The calls (name, arguments) made and answered since the user last spoke."""
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    answered: list[tuple[str, dict[str, Any]]] = []
    for item in chat_ctx.items:
        if item.type == "message" and item.role == "user":
            calls.clear()
            answered.clear()
        elif item.type == "function_call":
            calls[item.call_id] = (item.name, _arguments(item))
        elif item.type == "function_call_output" and item.call_id in calls:
            answered.append(calls[item.call_id])
    return answered


def is_repeat(call: llm.FunctionToolCall, answered: list[tuple[str, dict[str, Any]]]) -> bool:
    """Whether ``call`` asks again what an answered call asked (extra arguments, such as the
    schema's ``"type": "object"`` a small model copies in, do not make it new)."""
    arguments = _arguments(call)
    return any(
        name == call.name and all(arguments.get(k) == v for k, v in before.items())
        for name, before in answered
    )


def looks_like_json_call(text: str) -> bool:
    """A held-back reply that parses as JSON with a ``name`` is a (bad) call, not speech."""
    stripped = text.strip()
    return stripped.startswith(("{", "[", _toolcalls.OPEN_TAG)) and '"name"' in stripped


def build(options: LlamaOptions, settings: Settings) -> Any:
    """Factory of the ``llama`` LLM."""
    return LlamaLLM(options=options, settings=settings)
