"""What of the LLM's reply is spoken: tool-call syntax never reaches the TTS or the transcript.

A model that writes a tool call as text in the middle of its answer (``I called
order_status({"order_id": "42"}).``, a ``<tool_call>…</tool_call>`` block, a JSON object with
``name`` and ``arguments``) would have it read aloud, and stored as what the agent said.
:class:`ToolSyntaxFilter` cuts these out of the reply as it streams; plain text passes at once
(only a word that might open a call, such as ``order_status`` before its ``(``, waits for the
next token). :class:`SpeakingAgent` applies it to the LLM node, upstream of both the TTS and
the transcript; structured tool calls (``ChatChunk.delta.tool_calls``) pass untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from livekit.agents import Agent, llm, stt
from livekit.agents.types import FlushSentinel
from livekit.agents.voice import SpeechHandle, UserStateChangedEvent
from livekit.agents.voice.agent import ModelSettings
from livekit.agents.voice.io import TimedString

from livekit import rtc
from thinnest.engine.backchannel import without_backchannels
from thinnest.engine.refusals import forget_refusals
from thinnest.log import logger

__all__ = ["SpeakingAgent", "ToolSyntaxFilter", "without_tool_syntax"]

#: Seconds after the caller's voice ends before a reply paused by a backchannel resumes (a
#: noise waits ``THINNEST_FALSE_INTERRUPTION_TIMEOUT``: its words may still come).
RESUME_AFTER_BACKCHANNEL = 0.1

log = logger.getChild("engine")

_OPEN_TAG = "<tool_call>"
_CLOSE_TAG = "</tool_call>"
_FENCE = "```"
#: Where tool syntax may start: a tag, a JSON object or list, a code fence, or a name
#: directly followed by "(" (``order_status(``, ``functions.order_status(``).
_START = re.compile(r"<|\{|\[|`|\b[A-Za-z_][A-Za-z0-9_.]*\(")
#: A word at the end of what came so far: the next token may turn it into ``name(``.
_TRAILING_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_.]*$")
#: Longest piece held back waiting for its end; longer, it is judged as it is.
_MAX_HELD = 4000


def _closing(text: str, start: int) -> int | None:
    """Index just past the bracket that closes the one at ``start`` (JSON strings
    respected), or ``None`` if it is not closed yet."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[text[start]]]
    in_string, escaped = False, False
    for i in range(start + 1, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in pairs:
            stack.append(pairs[c])
        elif c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        elif c in ")]}":
            return i + 1  # unbalanced: judge what is there
    return None


def _is_call_object(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_is_call_object(v) for v in value)
    if not isinstance(value, dict):
        return False
    if "function" in value and isinstance(value["function"], dict):
        return True
    return "name" in value and bool({"arguments", "parameters", "args"} & value.keys())


def _is_call_json(text: str) -> bool:
    try:
        return _is_call_object(json.loads(text))
    except ValueError:
        # Cut off or sloppy JSON: a name and arguments are still a call.
        return '"name"' in text and ('"arguments"' in text or '"parameters"' in text)


def _is_call_arguments(inside: str) -> bool:
    """Whether ``name(<inside>)`` is call syntax rather than words in brackets."""
    inside = inside.strip()
    return not inside or inside[0] in "{[\"'" or bool(re.match(r"^[A-Za-z_]\w*\s*[=:]", inside))


def _tidy(text: str) -> str:
    # What a cut leaves: "I checked  ." -> "I checked."
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text)


class ToolSyntaxFilter:
    """Removes tool-call syntax from a reply that arrives in pieces.

    :meth:`push` takes the next piece and returns the text that may be spoken now;
    :meth:`flush` returns the rest at the end of the reply (an unfinished call is dropped).
    """

    def __init__(self) -> None:
        self._held = ""
        self._cut = False  # something was removed just before what is held

    def push(self, text: str) -> str:
        self._held += text
        return self._drain(final=False)

    def flush(self) -> str:
        out = self._drain(final=True)
        self._held = ""
        return out

    def _drain(self, *, final: bool) -> str:
        out: list[str] = []
        text = self._held
        while text:
            match = _START.search(text)
            if match is None:
                trailing = None if final else _TRAILING_NAME.search(text)
                keep = trailing.start() if trailing else len(text)
                out.append(text[:keep])
                text = text[keep:]
                break
            out.append(text[: match.start()])
            text = text[match.start() :]
            end, is_call = self._judge(text, final=final or len(text) > _MAX_HELD)
            if end is None:  # not decided yet: wait for more
                break
            if is_call:
                self._cut = True
            else:
                out.append(text[:end])
            text = text[end:]
        spoken = "".join(out)
        if not final:
            # Spaces wait for the next word: a cut that follows must not leave "called ."
            kept = spoken.rstrip(" \t")
            text, spoken = spoken[len(kept) :] + text, kept
        self._held = text
        return _tidy(spoken) if self._cut else spoken

    @staticmethod
    def _judge(text: str, *, final: bool) -> tuple[int | None, bool]:
        """How long the piece at the start of ``text`` is and whether it is a call;
        ``(None, _)`` while that cannot be told yet."""
        first = text[0]
        if first == "<":
            if text.startswith(_OPEN_TAG):
                close = text.find(_CLOSE_TAG)
                if close != -1:
                    return close + len(_CLOSE_TAG), True
                return (len(text), True) if final else (None, True)
            if _OPEN_TAG.startswith(text) or _CLOSE_TAG.startswith(text):
                return (len(text), False) if final else (None, False)
            if text.startswith(_CLOSE_TAG):
                return len(_CLOSE_TAG), True
            return 1, False
        if first == "`":
            if not text.startswith(_FENCE):
                if _FENCE.startswith(text) and not final:
                    return None, False
                return 1, False
            close = text.find(_FENCE, len(_FENCE))
            if close == -1:
                if not final:
                    return None, False
                return len(text), _is_call_json(text[len(_FENCE) :].removeprefix("json"))
            inside = text[len(_FENCE) : close].strip().removeprefix("json")
            return close + len(_FENCE), _is_call_json(inside.strip())
        if first in "{[":
            end = _closing(text, 0)
            if end is None:
                if not final:
                    return None, False
                return len(text), _is_call_json(text)
            return end, _is_call_json(text[:end])
        # name(...)
        paren = text.index("(")
        end = _closing(text, paren)
        if end is None:
            if not final:
                # "name(" followed by "{" or a quote is a call whatever follows.
                return None, False
            return len(text), _is_call_arguments(text[paren + 1 :])
        return end, _is_call_arguments(text[paren + 1 : end - 1])


async def without_tool_syntax(
    chunks: AsyncIterable[llm.ChatChunk | str | FlushSentinel],
) -> AsyncIterator[llm.ChatChunk | str | FlushSentinel]:
    """The LLM node's output with tool-call syntax cut out of its text."""
    spoken = ToolSyntaxFilter()
    async for chunk in chunks:
        if isinstance(chunk, str):
            text = spoken.push(chunk)
            if text:
                yield text
        elif isinstance(chunk, llm.ChatChunk) and chunk.delta and chunk.delta.content:
            text = spoken.push(chunk.delta.content)
            delta = chunk.delta.model_copy(update={"content": text or None})
            if text or delta.tool_calls or chunk.usage:
                yield chunk.model_copy(update={"delta": delta})
        else:
            if isinstance(chunk, FlushSentinel):
                rest = spoken.flush()
                if rest:
                    yield rest
            yield chunk
    rest = spoken.flush()
    if rest:
        yield rest


class SpeakingAgent(Agent):
    """An ``Agent`` whose replies never speak tool-call syntax (see the module docstring),
    for which a backchannel said while it speaks is not a turn (:mod:`.backchannel`), and whose
    model does not read its earlier refusals (:mod:`.refusals`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reply = ""  # the text of the agent's latest speech, as it is handed on
        # the paused reply to resume at the end of the caller's speech (a backchannel)
        self._resume_at_end_of_speech: SpeechHandle | None = None
        self._watching_user = False

    def _has_floor(self) -> bool:
        speech = self.session.current_speech
        return speech is not None and not speech.interrupted

    def _asks(self) -> bool:
        """Whether the agent's latest speech (playing, or the one just over) asks something."""
        return "?" in self._reply

    async def transcription_node(
        self, text: AsyncIterable[str | TimedString], model_settings: ModelSettings
    ) -> AsyncIterator[str | TimedString]:
        self._reply = ""
        async for delta in Agent.default.transcription_node(self, text, model_settings):
            self._reply += str(delta)
            yield delta

    def _resume_soon(self, _text: str) -> None:
        """A backchannel was heard over the paused reply: it resumes as the caller's voice ends
        (:data:`RESUME_AFTER_BACKCHANNEL`), not after the timeout a noise gets.

        The pause is livekit-agents' own (``_paused_speech``): the end of the caller's speech
        arms a timer with its ``timeout``, which every voiced frame before it sets back to
        the configured one. So the short timeout is set at the end of speech (the user state
        turning ``listening`` comes just before the timer is armed), or the running timer is
        restarted when the words come after it."""
        activity = self._activity
        paused = getattr(activity, "_paused_speech", None)
        if activity is None or paused is None or paused.handle is not self.session.current_speech:
            return
        try:
            if activity._false_interruption_timer is not None:  # the voice has ended already
                activity._start_false_interruption_timer(RESUME_AFTER_BACKCHANNEL)
                return
        except AttributeError:  # another livekit-agents: the default timeout still resumes it
            log.warning("backchannel: livekit-agents' pause is not where expected")
            return
        self._resume_at_end_of_speech = paused.handle
        if not self._watching_user:
            self._watching_user = True
            self.session.on("user_state_changed", self._on_user_state)

    def _on_user_state(self, event: UserStateChangedEvent) -> None:
        if event.new_state != "listening" or self._resume_at_end_of_speech is None:
            return
        handle, self._resume_at_end_of_speech = self._resume_at_end_of_speech, None
        paused = getattr(self._activity, "_paused_speech", None)
        if paused is not None and paused.handle is handle:
            paused.timeout = RESUME_AFTER_BACKCHANNEL

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterator[stt.SpeechEvent | str]:
        events = Agent.default.stt_node(self, audio, model_settings)
        async for event in without_backchannels(
            events, self._has_floor, on_dropped=self._resume_soon, agent_asks=self._asks
        ):
            yield event

    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterator[llm.ChatChunk | str | FlushSentinel]:
        # The model reads the conversation without its earlier refusals (:mod:`.refusals`).
        context = forget_refusals(chat_ctx)
        replies = Agent.default.llm_node(self, context, tools, model_settings)
        async for chunk in without_tool_syntax(replies):
            yield chunk
