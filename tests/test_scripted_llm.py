"""The scripted LLM's weather rule, which the tool-call tests drive the engine with."""

from __future__ import annotations

import pytest

from thinnest.testing import weather_rule


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


@pytest.mark.parametrize(
    ("heard", "city"),
    [
        ("What is the weather in Paris?", "Paris"),
        ("What's the whether in, Paris?", "Paris"),
        ("in Paris?", "Paris"),  # the tail of a question cut at a pause
        ("Weather Paris", "Paris"),
        ("How is the weather in Lyon today?", "Lyon"),
    ],
)
def test_weather_questions_call_the_tool_with_the_city(heard: str, city: str) -> None:
    assert weather_rule(_user(heard)) == {"name": "get_weather", "arguments": {"city": city}}


def test_a_weather_question_without_a_city_is_answered_with_a_question() -> None:
    assert weather_rule(_user("What is the weather")) == "Which city?"


def test_goodbye_ends_the_call_and_tool_results_are_read_back() -> None:
    assert weather_rule(_user("Thank you, goodbye."))["name"] == "end_call"  # type: ignore[index]
    tool = [{"role": "tool", "content": '{"forecast": "sunny"}'}]
    assert "sunny" in str(weather_rule(tool))


def test_a_goodbye_cut_in_two_turns_still_ends_the_call() -> None:
    """Under load a pause cuts "Thank you, goodbye. Please end the call." in two user turns,
    and the first one's answer is interrupted as outdated: the LLM then sees both messages.
    Reading only the last one, the rule answered "Please end the call." with words and the
    call never ended (tests/engine/test_tools.py, no call_ended within 120 s)."""
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "Here is what I found: sunny"},
        {"role": "user", "content": "Thank you, goodbye."},
        {"role": "user", "content": "Please end the call."},
    ]
    assert weather_rule(messages) == {
        "name": "end_call",
        "arguments": {"goodbye": "Goodbye, have a nice day!"},
    }


def test_words_already_answered_are_not_read_again() -> None:
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "Here is what I found: sunny"},
        {"role": "user", "content": "Thanks!"},
    ]
    assert weather_rule(messages) == "I am a scripted assistant."
