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
