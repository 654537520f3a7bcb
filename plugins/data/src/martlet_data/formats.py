"""Row formats and their conversion to the canonical row (DESIGN.md §4).

The canonical row is ms-swift's::

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str,
                   "loss": bool (optional), "tool_calls": [...] (optional)}, ...]}

with ``"rejected_response": str`` (or ``"rejected_messages": [...]``) for preference pairs,
``"label": bool`` for KTO, ``images``/``audios``/``videos`` (lists) for multimodal rows and
``tools`` where a row declares tools; plain text for pretraining is ``{"text": str}``.

Every converter is a small pure function ``row -> canonical row`` that raises
:class:`~martlet_data.errors.RowProblem` for a row it cannot use. :func:`to_canonical` picks the
converter (by the ``format`` given, else by :func:`detect_format`) and carries over the extra
columns named in ``keep``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from martlet.examples import rejected_conversation, row_kind  # noqa: F401 - moved to the core

from martlet_data.errors import RowProblem

# ------------------------------------------------------------------------- names

#: role spellings of ShareGPT, OpenAI, LLaMA-Factory and friends -> canonical role
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
    "tool_response": "tool",
}

#: columns read as the user's turn / the answer in query-response rows, in priority order
QUERY_KEYS = ("query", "prompt", "question", "instruction", "input")
RESPONSE_KEYS = ("response", "completion", "answer", "output")
TEXT_KEYS = ("text", "content")
#: row-level columns every converter carries over when present
PASSTHROUGH = ("images", "audios", "videos", "tools")
#: message keys kept besides role and content
MESSAGE_EXTRAS = ("loss", "tool_calls", "tool_call_id", "name")

FORMATS = (
    "messages",
    "sharegpt",
    "alpaca",
    "query_response",
    "preference",
    "kto",
    "text",
)

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _maybe_json(value: Any, field: str) -> Any:
    """A list-valued column stored as JSON text (CSV cells, some parquet files) -> its value."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowProblem(
                "wrong type", f"{field!r} holds text that is not valid JSON: {exc}"
            ) from None
    return value


def _text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    raise RowProblem("wrong type", f"{field!r} must be a string, got {type(value).__name__}")


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in row and row[key] is not None:
            return key, row[key]
    return None, None


# ------------------------------------------------------------------------- messages


def _content(value: Any, where: str, media: dict[str, list[str]]) -> str | None:
    """Message content as text; OpenAI content parts become text with <image>-style tags."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        pieces = []
        for part in value:
            if isinstance(part, str):
                pieces.append(part)
                continue
            if not isinstance(part, Mapping):
                raise RowProblem("wrong type", f"{where}: a content part must be an object")
            kind = part.get("type", "text")
            if kind == "text":
                pieces.append(_text(part.get("text", ""), f"{where} text part"))
                continue
            for medium in ("image", "audio", "video"):
                if kind in (medium, f"{medium}_url", f"input_{medium}"):
                    ref = part.get(kind, part.get(medium, part.get("url")))
                    if isinstance(ref, Mapping):
                        ref = ref.get("url", ref.get("path"))
                    if not isinstance(ref, str):
                        raise RowProblem("wrong type", f"{where}: {kind} part has no url")
                    media.setdefault(f"{medium}s", []).append(ref)
                    pieces.append(f"<{medium}>")
                    break
            else:
                raise RowProblem("wrong type", f"{where}: unknown content part type {kind!r}")
        return "".join(pieces)
    raise RowProblem("wrong type", f"{where}: content must be a string, got {type(value).__name__}")


def normalize_message(
    message: Any, index: int, field: str = "messages", media: dict | None = None
) -> dict[str, Any]:
    """One message as ``{"role", "content", ...}``; accepts ``from``/``value`` spellings."""
    where = f"{field}[{index}]"
    if not isinstance(message, Mapping):
        raise RowProblem("wrong type", f"{where} must be an object, got {type(message).__name__}")
    raw_role = message.get("role", message.get("from"))
    if not isinstance(raw_role, str):
        raise RowProblem("wrong type", f"{where} has no role (or 'from')")
    role = ROLES.get(raw_role.strip().lower())
    if role is None:
        raise RowProblem(
            "unknown role",
            f"{where} has role {raw_role!r}; known: system, user, assistant, tool "
            "(and ShareGPT's human, gpt, function_call, observation)",
        )
    if "content" in message:
        raw = message["content"]
    else:
        raw = message.get("value", message.get("text"))
    content = _content(raw, where, media if media is not None else {})
    out: dict[str, Any] = {"role": role, "content": content if content is not None else ""}
    for key in MESSAGE_EXTRAS:
        if key in message and message[key] is not None:
            out[key] = message[key]
    if "loss" in out and not isinstance(out["loss"], bool):
        raise RowProblem("wrong type", f"{where}.loss must be true or false, got {out['loss']!r}")
    if content is None and not out.get("tool_calls"):
        raise RowProblem(
            "empty assistant turn" if role == "assistant" else "wrong type",
            f"{where} ({role}) has no content",
        )
    return out


def check_conversation(messages: list[dict[str, Any]], field: str = "messages") -> None:
    """A usable conversation: at least one assistant turn, none empty, no empty user turn."""
    if not messages:
        raise RowProblem("no assistant turn", f"{field!r} is empty")
    if not any(m["role"] == "assistant" for m in messages):
        raise RowProblem("no assistant turn", f"{field!r} has no assistant message to learn from")
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and _blank(m["content"]) and not m.get("tool_calls"):
            raise RowProblem("empty assistant turn", f"{field}[{i}] (assistant) is empty")
        if m["role"] == "user" and _blank(m["content"]):
            raise RowProblem("empty prompt", f"{field}[{i}] (user) is empty")


def check_start(row: Mapping[str, Any]) -> None:
    """A canonical row's conversations (``messages``, ``rejected_messages``) do not open with an
    assistant turn that would be learned from: the chat templates cannot label an answer that
    no prompt comes before (an opening assistant turn with ``"loss": false`` is context only).

    Checked on the finished row, after a ``system`` column has been put first.
    """
    for field in ("messages", "rejected_messages"):
        messages = row.get(field)
        if not messages:
            continue
        first = messages[0]
        if first.get("role") == "assistant" and first.get("loss") is not False:
            raise RowProblem(
                "starts with assistant turn",
                f"{field}[0] is an assistant message; a conversation must start with a user "
                'or system message (or mark that message "loss": false to keep it as context)',
            )


def conversation(
    value: Any, field: str, media: dict | None = None, check: bool = True
) -> list[dict[str, Any]]:
    """A list of messages from a column, normalized (and checked unless ``check`` is False)."""
    value = _maybe_json(value, field)
    if not isinstance(value, list):
        raise RowProblem(
            "wrong type", f"{field!r} must be a list of messages, got {type(value).__name__}"
        )
    messages = [normalize_message(m, i, field, media) for i, m in enumerate(value)]
    if check:
        check_conversation(messages, field)
    return messages


def _tools(value: Any) -> list[Any]:
    """A row's ``tools`` as a list of tool objects (JSON schemas); JSON text is parsed and one
    object becomes a list of one. Anything else cannot be rendered by a chat template."""
    value = _maybe_json(value, "tools")
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        got = type(value).__name__ if not isinstance(value, list) else "a list holding non-objects"
        raise RowProblem(
            "wrong type",
            f"'tools' must be a list of tool objects (JSON schemas) or its JSON text, got {got}",
        )
    return value


def _passthrough(row: Mapping[str, Any], media: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in PASSTHROUGH:
        value = row.get(key)
        if value is None or value == [] or (key == "tools" and _blank(value)):
            continue
        if key == "tools":
            value = _tools(value)
            if not value:
                continue
        elif isinstance(value, str):
            value = [value]
        out[key] = value
    for key, refs in media.items():
        out[key] = list(out.get(key, [])) + refs
    return out


def _system_first(messages: list[dict[str, Any]], system: Any) -> list[dict[str, Any]]:
    if _blank(system):
        return messages
    system = _text(system, "system")
    if messages and messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system}, *messages]


def _history(value: Any) -> list[dict[str, Any]]:
    value = _maybe_json(value, "history")
    if value is None:
        return []
    if not isinstance(value, list):
        raise RowProblem("wrong type", "'history' must be a list of [query, response] pairs")
    out: list[dict[str, Any]] = []
    for i, pair in enumerate(value):
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(p, str) for p in pair)
        ):
            raise RowProblem("wrong type", f"history[{i}] must be a [query, response] pair")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out


def from_messages(row: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI ``messages`` (``role``/``content``; ``from``/``value`` also accepted)."""
    media: dict[str, list[str]] = {}
    messages = conversation(row.get("messages"), "messages", media)
    messages = _system_first(messages, row.get("system"))
    return {"messages": messages, **_passthrough(row, media)}


def from_sharegpt(row: Mapping[str, Any]) -> dict[str, Any]:
    """ShareGPT ``conversations`` of ``{"from", "value"}``; a ``system`` column goes first."""
    media: dict[str, list[str]] = {}
    messages = conversation(row.get("conversations"), "conversations", media)
    messages = _system_first(messages, row.get("system"))
    return {"messages": messages, **_passthrough(row, media)}


def _turns(
    row: Mapping[str, Any], query: Any, response: Any, qkey: str, rkey: str
) -> list[dict[str, Any]]:
    query = _text(query, qkey)
    response = _text(response, rkey)
    if not query.strip():
        raise RowProblem("empty prompt", f"{qkey!r} is empty")
    if not response.strip():
        raise RowProblem("empty assistant turn", f"{rkey!r} is empty")
    messages = _history(row.get("history"))
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": response}]
    return _system_first(messages, row.get("system"))


def alpaca_query(instruction: Any, input_: Any) -> str:
    """Alpaca's prompt: the instruction, then the input on the next line when there is one."""
    instruction = _text(instruction, "instruction") if instruction is not None else ""
    input_ = _text(input_, "input") if input_ is not None else ""
    if instruction.strip() and input_.strip():
        return f"{instruction}\n{input_}"
    return instruction if instruction.strip() else input_


def from_alpaca(row: Mapping[str, Any]) -> dict[str, Any]:
    """Alpaca: ``instruction``, optional ``input``, ``output``; optional ``system``, ``history``."""
    if row.get("output") is None:
        raise RowProblem("no usable fields", "an Alpaca row needs 'output'")
    query = alpaca_query(row.get("instruction"), row.get("input"))
    messages = _turns(row, query, row.get("output"), "instruction", "output")
    return {"messages": messages, **_passthrough(row, {})}


def from_query_response(row: Mapping[str, Any]) -> dict[str, Any]:
    """``query``/``response`` (or ``prompt``/``completion``, ``question``/``answer``, ...),
    optional ``system`` and ``history``."""
    qkey, query = _first(row, QUERY_KEYS)
    rkey, response = _first(row, RESPONSE_KEYS)
    if qkey is None or rkey is None:
        raise RowProblem(
            "no usable fields",
            f"need a query column ({', '.join(QUERY_KEYS)}) and a response column "
            f"({', '.join(RESPONSE_KEYS)})",
        )
    messages = _turns(row, query, response, qkey, rkey)
    return {"messages": messages, **_passthrough(row, {})}


def from_text(row: Mapping[str, Any]) -> dict[str, Any]:
    """Plain text for pretraining: ``text`` (or ``content``)."""
    key, value = _first(row, TEXT_KEYS)
    if key is None:
        raise RowProblem("no usable fields", "a text row needs 'text' (or 'content')")
    value = _text(value, key)
    if not value.strip():
        raise RowProblem("empty text", f"{key!r} is empty")
    return {"text": value, **_passthrough(row, {})}


# ------------------------------------------------------------------------- preference

_HH_SPLIT = re.compile(r"\n\n(Human|Assistant|Hum):")


def parse_transcript(text: str) -> list[dict[str, Any]]:
    """An Anthropic HH-RLHF transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages."""
    text = "\n\n" + text.strip() if not text.startswith("\n\n") else text
    parts = _HH_SPLIT.split(text)
    messages = []
    # parts: [prefix, speaker, text, speaker, text, ...]
    for speaker, said in zip(parts[1::2], parts[2::2], strict=True):
        role = "assistant" if speaker == "Assistant" else "user"
        messages.append({"role": role, "content": said.strip()})
    return messages


def _is_transcript(value: Any) -> bool:
    return isinstance(value, str) and bool(_HH_SPLIT.search("\n\n" + value.lstrip()))


def _prompt_messages(row: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The prompt of a preference/KTO row as messages, or None when it has none."""
    key, prompt = _first(row, QUERY_KEYS)
    if key is None:
        return None
    prompt = _maybe_json(prompt, key)
    if isinstance(prompt, list):
        messages = conversation(prompt, key, check=False)
        if not messages:
            raise RowProblem("empty prompt", f"{key!r} is an empty list")
    else:
        text = _text(prompt, key)
        if key == "instruction" and row.get("input"):
            text = alpaca_query(text, row.get("input"))
        if not text.strip():
            raise RowProblem("empty prompt", f"{key!r} is empty")
        messages = [{"role": "user", "content": text}]
    messages = _history(row.get("history")) + messages
    return _system_first(messages, row.get("system"))


def _side(value: Any, side: str) -> list[dict[str, Any]] | str:
    """One side of a pair: a string answer or a list of messages."""
    value = _maybe_json(value, side)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return [normalize_message(value, 0, side)]
    if isinstance(value, list):
        return conversation(value, side, check=False)
    raise RowProblem(
        "wrong type",
        f"{side!r} must be a string or a list of messages, got {type(value).__name__}",
    )


def _answer_text(side: list[dict[str, Any]] | str) -> str:
    return side if isinstance(side, str) else (side[-1]["content"] if side else "")


def _pair(
    prompt: list[dict[str, Any]] | None,
    chosen: list[dict[str, Any]] | str,
    rejected: list[dict[str, Any]] | str,
) -> dict[str, Any]:
    """Canonical preference row from a prompt (or None) and two sides."""
    if prompt is None and isinstance(chosen, str) and _is_transcript(chosen):
        chosen_conv, rejected_conv = parse_transcript(chosen), None
        if isinstance(rejected, str) and _is_transcript(rejected):
            rejected_conv = parse_transcript(rejected)
        else:
            rejected_conv = [*chosen_conv[:-1], {"role": "assistant", "content": rejected}]
        chosen, rejected = chosen_conv, rejected_conv
    if isinstance(chosen, str) or isinstance(rejected, str):
        if prompt is None:
            raise RowProblem(
                "empty prompt",
                "the pair has string answers but no prompt column (prompt, query, question)",
            )
        chosen_msgs = (
            [{"role": "assistant", "content": chosen}] if isinstance(chosen, str) else chosen
        )
        messages = prompt + chosen_msgs
        rejected_text = _answer_text(rejected)
        check_conversation(messages)
        if _blank(rejected_text):
            raise RowProblem("missing rejected response", "'rejected' is empty")
        if rejected_text.strip() == messages[-1]["content"].strip():
            raise RowProblem("chosen equals rejected", "the two answers are identical")
        return {"messages": messages, "rejected_response": rejected_text}
    # both sides are message lists: answers to the prompt (TRL's conversational format), or
    # whole conversations that already hold it (UltraFeedback, HH-RLHF as messages)
    whole = bool(chosen) and chosen[0]["role"] != "assistant"
    chosen_full = chosen if whole else (prompt or []) + chosen
    rejected_full = rejected if whole else (prompt or []) + rejected
    check_conversation(chosen_full, "chosen")
    if not rejected_full or _blank(rejected_full[-1]["content"]):
        raise RowProblem("missing rejected response", "'rejected' has no answer")
    if chosen_full == rejected_full:
        raise RowProblem("chosen equals rejected", "the two conversations are identical")
    if (
        chosen_full[:-1] == rejected_full[:-1]
        and rejected_full[-1]["role"] == "assistant"
        and chosen_full[-1]["role"] == "assistant"
    ):
        if rejected_full[-1]["content"].strip() == chosen_full[-1]["content"].strip():
            raise RowProblem("chosen equals rejected", "the two answers are identical")
        return {"messages": chosen_full, "rejected_response": rejected_full[-1]["content"]}
    check_conversation(rejected_full, "rejected")
    return {"messages": chosen_full, "rejected_messages": rejected_full}


def from_preference(row: Mapping[str, Any]) -> dict[str, Any]:
    """Preference pairs: ``chosen``/``rejected`` (strings, single messages or message lists,
    with or without a ``prompt``), or any conversation format plus ``rejected_response``
    (or ``rejected_messages``)."""
    if "rejected_response" in row or "rejected_messages" in row:
        base_row = {
            k: v for k, v in row.items() if k not in ("rejected_response", "rejected_messages")
        }
        base = convert(base_row, detect_format(base_row, allow_pairs=False))
        if "text" in base:
            raise RowProblem("no usable fields", "a preference row needs a conversation")
        if row.get("rejected_messages") is not None:
            rejected_msgs = conversation(row["rejected_messages"], "rejected_messages")
            if rejected_msgs == base["messages"]:
                raise RowProblem("chosen equals rejected", "the two conversations are identical")
            return {**base, "rejected_messages": rejected_msgs, **_margin(row)}
        rejected = row.get("rejected_response")
        if _blank(rejected):
            raise RowProblem("missing rejected response", "'rejected_response' is empty")
        rejected = _text(rejected, "rejected_response")
        if rejected.strip() == base["messages"][-1]["content"].strip():
            raise RowProblem("chosen equals rejected", "the two answers are identical")
        return {**base, "rejected_response": rejected, **_margin(row)}
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if _blank(chosen) or chosen == []:
        raise RowProblem("missing chosen response", "'chosen' is missing or empty")
    if _blank(rejected) or rejected == []:
        raise RowProblem("missing rejected response", "'rejected' is missing or empty")
    prompt = _prompt_messages(row)
    if prompt is None:
        base_key = "messages" if "messages" in row else "conversations"
        if base_key in row:  # LLaMA-Factory: conversations + chosen/rejected messages
            prompt = conversation(row[base_key], base_key, check=False)
            prompt = _system_first(prompt, row.get("system"))
    out = _pair(prompt, _side(chosen, "chosen"), _side(rejected, "rejected"))
    return {**out, **_passthrough(row, {}), **_margin(row)}


def _margin(row: Mapping[str, Any]) -> dict[str, float]:
    """A pair's optional ``margin`` (how much better chosen is; reward-model training)."""
    value = row.get("margin")
    if value is None:
        return {}
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise RowProblem("bad margin", f"'margin' must be a number, got {value!r}")
    return {"margin": float(value)}


# ------------------------------------------------------------------------- KTO


def parse_label(value: Any) -> bool:
    """A KTO label: a bool, 0/1, or true/false/yes/no text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise RowProblem("wrong type", f"'label' must be true or false, got {value!r}")


def from_kto(row: Mapping[str, Any]) -> dict[str, Any]:
    """KTO: a conversation (``messages``, ``conversations``, ``prompt``+``completion``, ...)
    with a boolean ``label`` (is the last answer desirable?)."""
    label = parse_label(row.get("label"))
    base_row = {k: v for k, v in row.items() if k != "label"}
    if "messages" not in base_row and "conversations" not in base_row:
        prompt = _prompt_messages(base_row)
        rkey, completion = _first(base_row, RESPONSE_KEYS)
        if prompt is None or rkey is None:
            raise RowProblem(
                "no usable fields",
                "a KTO row needs messages (or conversations), or a prompt and a completion",
            )
        completion = _maybe_json(completion, rkey)
        if isinstance(completion, list):
            answer = conversation(completion, rkey, check=False)
        else:
            answer = [{"role": "assistant", "content": _text(completion, rkey)}]
        messages = prompt + answer
        check_conversation(messages)
        return {"messages": messages, "label": label, **_passthrough(row, {})}
    base = convert(base_row, detect_format(base_row, allow_pairs=False))
    return {**base, "label": label}


# ------------------------------------------------------------------------- detection

CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "messages": from_messages,
    "sharegpt": from_sharegpt,
    "alpaca": from_alpaca,
    "query_response": from_query_response,
    "preference": from_preference,
    "kto": from_kto,
    "text": from_text,
}

FORMAT_ALIASES = {
    "openai": "messages",
    "chatml": "messages",
    "conversations": "sharegpt",
    "query-response": "query_response",
    "query": "query_response",
    "response": "query_response",
    "dpo": "preference",
    "pairwise": "preference",
    "pretrain": "text",
    "pt": "text",
    "plain": "text",
    "mcq": "messages",
}


def normalize_format(name: str | None) -> str | None:
    """A format name (or alias) -> one of :data:`FORMATS`; None/"" or "auto" -> None.

    Raises:
        RowProblem: never; a bad name raises ValueError with the known names.
    """
    if name is None or not str(name).strip() or str(name).strip().lower() == "auto":
        return None
    key = str(name).strip().lower().replace("-", "_")
    key = FORMAT_ALIASES.get(key, FORMAT_ALIASES.get(key.replace("_", "-"), key))
    if key not in CONVERTERS:
        raise ValueError(f"unknown format {name!r}; known: auto, {', '.join(FORMATS)}")
    return key


def detect_format(row: Mapping[str, Any], allow_pairs: bool = True) -> str:
    """The format of one raw row, from the columns it has.

    Raises:
        RowProblem: ``no usable fields`` when no format fits (the message lists the columns).
    """
    if not isinstance(row, Mapping):
        raise RowProblem("wrong type", f"a row must be an object, got {type(row).__name__}")
    present = {k for k, v in row.items() if v is not None}
    if allow_pairs and present & {"rejected_response", "rejected_messages", "chosen", "rejected"}:
        return "preference"
    conversational = {"messages", "conversations", *QUERY_KEYS, *RESPONSE_KEYS}
    if allow_pairs and "label" in present and present & conversational:
        return "kto"
    if "messages" in present:
        return "messages"
    if "conversations" in present:
        return "sharegpt"
    if "instruction" in present and "output" in present:
        return "alpaca"
    if present & set(QUERY_KEYS) and present & set(RESPONSE_KEYS):
        return "query_response"
    if present & set(TEXT_KEYS):
        return "text"
    columns = ", ".join(sorted(map(str, row))) or "none"
    raise RowProblem(
        "no usable fields",
        f"columns: {columns}; expected messages, conversations, instruction/output, "
        "query/response, prompt/chosen/rejected, messages+label or text "
        '(map yours with --columns \'{"theirs": "ours"}\')',
    )


def convert(row: Mapping[str, Any], format: str) -> dict[str, Any]:
    """Convert ``row`` with the converter of ``format``."""
    return CONVERTERS[format](row)


def apply_columns(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> dict[str, Any]:
    """Rename columns: ``{"their_name": "our_name"}``; a renamed column replaces ours."""
    if not columns:
        return dict(row)
    out = {k: v for k, v in row.items() if k not in columns}
    for theirs, ours in columns.items():
        if theirs in row:
            out[ours] = row[theirs]
    return out


def to_canonical(
    row: Any,
    format: str | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    keep: Collection[str] = (),
) -> tuple[dict[str, Any], str]:
    """``(canonical row, format used)`` for one raw row.

    Args:
        row: the raw row (a mapping).
        format: force a format (see :data:`FORMATS`); None detects it from the columns.
        columns: rename columns first (``{"their_name": "our_name"}``).
        keep: extra columns to carry over unchanged (the targets of ``columns`` are kept too).

    Raises:
        RowProblem: the row cannot be used.
    """
    if not isinstance(row, Mapping):
        raise RowProblem("wrong type", f"a row must be an object, got {type(row).__name__}")
    row = apply_columns(row, columns)
    used = format or detect_format(row)
    out = convert(row, used)
    check_start(out)
    extras = set(keep) | set((columns or {}).values())
    for key in extras:
        if key in row and key not in out and key not in _CONSUMED.get(used, ()):
            out[key] = row[key]
    return out, used


def to_prompt(
    row: Any, format: str | None = None, *, keep: Collection[str] = ()
) -> tuple[dict[str, Any], str]:
    """``(row to answer, format used)`` for inference and evaluation inputs.

    The row's ``messages`` end with the last user turn; a final assistant turn, when the row
    has one, becomes ``reference``. Besides every training format, rows without an answer are
    accepted: ``messages``/``conversations`` that end with the user, and a lone query column
    (``query``, ``prompt``, ``question``, ``instruction`` [+ ``input``]).

    Raises:
        RowProblem: nothing to answer (no user turn, an empty prompt).
    """
    if not isinstance(row, Mapping):
        raise RowProblem("wrong type", f"a row must be an object, got {type(row).__name__}")
    try:
        out, used = to_canonical(row, format, keep=keep)
        messages = list(out.get("messages") or [])
    except RowProblem as problem:
        if problem.reason not in (
            "no assistant turn",
            "no usable fields",
            "starts with assistant turn",
        ):
            raise
        used = format or "prompt"
        out = {k: row[k] for k in keep if k in row}
        if row.get("messages") is not None:
            messages = conversation(row["messages"], "messages", check=False)
        elif row.get("conversations") is not None:
            messages = conversation(row["conversations"], "conversations", check=False)
        else:
            key, query = _first(row, QUERY_KEYS)
            if key is None:
                raise
            text = (
                alpaca_query(row.get("instruction"), row.get("input"))
                if key in ("instruction", "input")
                else _text(query, key)
            )
            messages = _history(row.get("history")) + [{"role": "user", "content": text}]
        messages = _system_first(messages, row.get("system"))
    if "text" in out and not messages:
        raise RowProblem("no usable fields", "a text row has no question to answer")
    reference = None
    if messages and messages[-1]["role"] == "assistant":
        reference = messages.pop()["content"]
    if not messages or messages[-1]["role"] != "user" or _blank(messages[-1]["content"]):
        raise RowProblem("empty prompt", "the row ends with no user message to answer")
    out = {**{k: v for k, v in out.items() if k != "messages"}, "messages": messages}
    out["reference"] = reference
    return out, used


# columns a format turns into messages (not carried over as extras even when mapped)
_CONSUMED: dict[str, tuple[str, ...]] = {
    "messages": ("messages", "system"),
    "sharegpt": ("conversations", "system"),
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "query_response": (*QUERY_KEYS, *RESPONSE_KEYS, "system", "history"),
    "preference": (
        "messages",
        "conversations",
        "chosen",
        "rejected",
        "rejected_response",
        "rejected_messages",
        "system",
        "history",
        *QUERY_KEYS,
        *RESPONSE_KEYS,
    ),
    "kto": ("messages", "conversations", "label", "system", "history", *QUERY_KEYS, *RESPONSE_KEYS),
    "text": TEXT_KEYS,
}
