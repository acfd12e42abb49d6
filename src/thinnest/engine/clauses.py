"""How the agent's reply is cut for a TTS that speaks a sentence at a time.

livekit-agents feeds a non-streaming TTS (Piper, espeak-ng) through its ``StreamAdapter``,
which hands over a sentence once the LLM has started the next one. With the offline LLM
writing about 14 tokens a second, "Sure, I can help you book a table for two." reaches the
TTS about a second after the LLM's first token. :class:`FirstClauseTokenizer` lets the
first clause of each reply go as soon as it is complete ("Sure," after two tokens) and the
rest sentence by sentence, as before: the caller hears the agent start while the LLM
writes on. Only the first clause is cut, so the rest keeps a sentence's intonation.
"""

from __future__ import annotations

import re
from typing import Any

from livekit.agents import tokenize, tts
from livekit.agents.tokenize import BufferedSentenceStream, SentenceStream

__all__ = ["FirstClauseTokenizer", "for_session"]

#: A pause mark followed by a space: the end of a clause or a sentence.
_PAUSE = re.compile(r"[,;:.!?…](?=\s)")


class _FirstClauseStream(BufferedSentenceStream):
    def __init__(self, sentences: tokenize.SentenceTokenizer) -> None:
        self._sentences = sentences
        self._first = True
        super().__init__(tokenizer=self._split, min_token_len=1, min_ctx_len=1)

    def _split(self, text: str) -> list[Any]:
        if self._first:
            pause = _PAUSE.search(text)
            if pause is not None and text[pause.end() :].strip():
                self._first = False
                cut = pause.end()
                return [(text[:cut], 0, cut), (text[cut:], cut, len(text))]
        parts = self._sentences.tokenize(text)
        if len(parts) > 1:
            self._first = False
        return parts

    def flush(self) -> None:
        super().flush()
        self._first = True  # the next segment of the reply starts with a clause again


class FirstClauseTokenizer(tokenize.SentenceTokenizer):
    """Sentences, the first clause of each reply segment on its own."""

    def __init__(self) -> None:
        # what livekit-agents uses for a sentence-at-a-time TTS
        self._sentences = tokenize.blingfire.SentenceTokenizer(retain_format=True)

    def tokenize(self, text: str, *, language: str | None = None) -> list[str]:
        return self._sentences.tokenize(text, language=language)

    # SentenceStream by its own name: in this class, ``tokenize`` is the method above.
    def stream(self, *, language: str | None = None) -> SentenceStream:
        return _FirstClauseStream(self._sentences)


def for_session(engine: tts.TTS) -> tts.TTS:
    """``engine`` as the session should get it: a sentence-at-a-time TTS behind the
    first-clause cut, a streaming one unchanged."""
    if engine.capabilities.streaming:
        return engine
    return tts.StreamAdapter(tts=engine, sentence_tokenizer=FirstClauseTokenizer())
