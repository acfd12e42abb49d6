"""Earlier refusals, and the caller turns that drew them, are left out of the LLM's context;
the latest exchange and everything else stay."""

from __future__ import annotations

import pytest
from livekit.agents import llm

from thinnest.engine.refusals import forget_refusals, is_refusal

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I don't have a capital of pain.",
        "I apologize, but I don't have a capital of Italy.",
        "Sorry, I can't help with that.",
        "I’m sorry, I cannot answer that question.",
        "Unfortunately, I don't know the answer.",
        "I cannot assist with that request.",
        "As an AI, I have no feelings.",
        "I'm unable to browse the internet.",
        "I'm sorry, but I don't understand.",
        "Sorry, I didn't catch that. Could you say it again?",
    ],
)
def test_refusals_are_recognised(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry to hear that. Is there anything else?",
        "Paris is the capital of France.",
        "The sky is blue. Sorry, I can't stay long.",  # the answer came first
        "You can't see the moon at noon in summer.",
        "Sorry for the wait! Your order 42 has shipped.",
        "",
    ],
)
def test_answers_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def _ctx(*turns: tuple[str, str]) -> llm.ChatContext:
    ctx = llm.ChatContext()
    for role, text in turns:
        ctx.add_message(role=role, content=text)  # type: ignore[arg-type]
    return ctx


def _texts(ctx: llm.ChatContext) -> list[tuple[str, str]]:
    return [(m.role, m.text_content or "") for m in ctx.items if m.type == "message"]


def test_an_earlier_refusal_and_the_question_that_drew_it_are_forgotten() -> None:
    ctx = _ctx(
        ("system", "Be brief."),
        ("assistant", "Hello! How can I help?"),
        ("user", "What is my capital of pain?"),
        ("assistant", "I'm sorry, but I don't have a capital of pain."),
        ("user", "What is the capital of Italy?"),
    )
    seen = forget_refusals(ctx)
    assert _texts(seen) == [
        ("system", "Be brief."),
        ("assistant", "Hello! How can I help?"),
        ("user", "What is the capital of Italy?"),
    ]
    assert len(ctx.items) == 5  # the session's own history is untouched


def test_nothing_changes_without_an_earlier_refusal_nor_for_the_latest_exchange() -> None:
    ctx = _ctx(
        ("system", "Be brief."),
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
        ("user", "And of Italy?"),
    )
    assert forget_refusals(ctx) is ctx
    # a refusal after the latest caller turn (a reply in progress) is not the model's past
    ongoing = _ctx(("system", "x"), ("user", "Hi?"), ("assistant", "Sorry, I can't."))
    assert forget_refusals(ongoing) is ongoing
