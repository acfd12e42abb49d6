"""Earlier refusals are left out of what the LLM reads, so one refusal does not breed more.

A small local model that once answered "I'm sorry, but I don't have that information." reads
that answer back at every later turn and copies it: measured in ``thinnest bench
conversation``, one refusal was followed by the same refusal to the next two, answerable,
questions ("I'm sorry, but I don't have a capital of pain."). A caller's failed exchange
(usually a misheard question) is no use to the model once the conversation has moved on, so
:func:`forget_refusals` drops each earlier refusal, with the caller's turn that drew it, from
the context the LLM is given. The session's own history (transcripts, the stored
conversation) keeps them; only the model's view changes, and never for the latest exchange.
"""

from __future__ import annotations

import re

from livekit.agents import llm

__all__ = ["forget_refusals", "is_refusal"]

_APOLOGY = r"(?:i'?m|i am)\s+(?:so\s+|very\s+)?sorry|sorry|i\s+apologi[sz]e|unfortunately"
_INABILITY = (
    r"can(?:'|no)?t|cannot|could(?:n'?t| not)|unable|not able|"
    r"(?:don'?t|do not|didn'?t|did not|doesn'?t|does not) (?:have|know|understand|catch|get)|"
    r"no (?:information|way)|not (?:sure|aware)|not possible"
)
#: An apology followed, in the same sentence, by an inability: "I'm sorry, but I can't…",
#: "Unfortunately, I don't have…", "I'm sorry, but I don't understand." (a failed exchange
#: too: the bench saw the last one copied into five answers in a row). "I'm sorry to hear
#: that." is not one.
_APOLOGETIC = re.compile(rf"^\W*(?:{_APOLOGY})\b[^.!?]*?\b(?:{_INABILITY})\b", re.I)
#: A flat refusal that opens the reply: "I cannot help with that.", "As an AI, …".
_FLAT = re.compile(
    r"^\W*(?:as an ai\b|i(?:'m| am)\s+(?:unable|not able)\b|i\s+(?:can(?:'|no)?t|cannot)\s+"
    r"(?:help|assist|answer|provide|do that)\b)",
    re.I,
)


def is_refusal(text: str) -> bool:
    """Whether a reply opens by declining to answer (an apology with an inability, or a flat
    "I cannot help…"); an answer that merely contains "sorry" or "can't" later is not."""
    text = text.strip().replace("’", "'")
    return bool(_APOLOGETIC.match(text) or _FLAT.match(text))


def forget_refusals(chat_ctx: llm.ChatContext) -> llm.ChatContext:
    """``chat_ctx`` without its earlier refusals and the caller's turns that drew them.

    Only exchanges before the latest caller turn are touched; the context is returned as is
    (the same object) when there is nothing to drop, else a copy.
    """
    items = chat_ctx.items
    last_user = max(
        (i for i, item in enumerate(items) if item.type == "message" and item.role == "user"),
        default=-1,
    )
    drop: set[int] = set()
    for i, item in enumerate(items[:last_user]):
        if item.type != "message" or item.role != "assistant":
            continue
        if not is_refusal(item.text_content or ""):
            continue
        drop.add(i)
        for j in range(i - 1, -1, -1):  # the caller's turn(s) just before it
            prev = items[j]
            if prev.type != "message" or prev.role != "user":
                break
            drop.add(j)
    if not drop:
        return chat_ctx
    return llm.ChatContext(items=[item for i, item in enumerate(items) if i not in drop])
