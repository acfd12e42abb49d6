"""The prompt in ChatML, rendered here: short and identical from turn to turn.

llama.cpp reuses the KV cache of the longest common prefix, so a prompt that does not
change in its beginning keeps the time to the first token low. Tools are described in the
system prompt in Qwen's ``<tool_call>`` convention; past calls are not shown, only their
results, as facts in the user's turn (see :func:`render_prompt`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from livekit.agents import llm

from thinnest.providers import _toolcalls

__all__ = ["DEFAULT_SYSTEM_PROMPT", "STOP", "chat_turns", "clean", "render_prompt", "retry_turn"]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Answer in one or two short spoken sentences, "
    "without lists or markdown."
)
# Measured on the 0.5B model, greedy, over three questions with a tool result: this wording
# got three answers in words; "Answer my question in words." after "Information for your
# answer:" had it call the tool again, "Use this to answer..." had it read the JSON out.
_AFTER_TOOL = "Answer my question in words, without calling a tool."
_FOUND = "Facts:"
_FAILED = "This could not be found out:"
_SPECIAL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
STOP = ["<|im_end|>", "<|endoftext|>", "<|im_start|>"]
_TOOLS_PROMPT = (
    "\n\n# Tools\nYou may call one of these tools (never name them to the user):\n"
    "<tools>\n{tools}\n</tools>\n"
    "To call a tool, reply with nothing else than:\n<tool_call>\n"
    '{{"name": <tool name>, "arguments": <JSON object>}}\n</tool_call>'
)


def clean(text: str) -> str:
    """``text`` without ChatML's special tokens (a user cannot open a turn of their own)."""
    for token in _SPECIAL:
        text = text.replace(token, "")
    return text


def chat_turns(
    chat_ctx: llm.ChatContext, tools: Sequence[llm.Tool], *, system_prompt: str | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """A chat as the 0.5B model answers it best: one system text, then the turns.

    The system and developer messages and the tools' description make the system text; past
    calls are not shown, only their results, as facts in the user's turn; consecutive turns
    of one side are joined.

    Args:
        chat_ctx: the conversation.
        tools: the function tools to describe.
        system_prompt: used when the chat has no system message.

    Returns:
        The system text and the turns as ``(role, text)``, role ``user`` or ``assistant``.
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
            text = clean(item.text_content or "")
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
            add("tool", f"{fact} {clean(item.output)}")

    head = "\n".join(system) or system_prompt or DEFAULT_SYSTEM_PROMPT
    described = _toolcalls.describe_tools(tools)
    if described:
        head += _TOOLS_PROMPT.format(
            tools="\n".join(json.dumps(t, ensure_ascii=False) for t in described)
        )
    return head, [
        ("user", text + "\n" + _AFTER_TOOL) if role == "tool" else (role, text)
        for role, text in turns
    ]


def render_prompt(
    chat_ctx: llm.ChatContext, tools: Sequence[llm.Tool], *, system_prompt: str | None = None
) -> tuple[str, list[str]]:
    """Render a chat (:func:`chat_turns`) as a ChatML prompt ending in an open assistant turn.

    Returns:
        The system block and the later turns, each a complete ChatML segment (the caller
        drops the oldest turns to fit the context and appends the assistant opener).
    """
    head, turns = chat_turns(chat_ctx, tools, system_prompt=system_prompt)
    rendered = [f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns]
    return f"<|im_start|>system\n{head}<|im_end|>\n", rendered


def retry_turn(reply: str, error: str) -> str:
    """The model's ``reply`` (a bad call) closed, the ``error`` shown, an answer opened."""
    return (
        f"{clean(reply)}<|im_end|>\n<|im_start|>user\n<tool_response>\nError: "
        f"{error}. Call a listed tool with valid arguments, or answer in plain "
        "words.\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
