"""Chat templates: render a conversation and encode it for training with assistant-only labels.

Every template renders through the tokenizer's own ``apply_chat_template``: ``auto`` with the
chat template the tokenizer ships, the others with a registered Jinja template (see
:mod:`martlet_hf.chat_templates`). So the text is byte-identical to ``apply_chat_template`` and the
token ids equal what it returns with ``tokenize=True``.

How the labels are found: the conversation is rendered once; for each assistant message the
text up to it (``messages[:i]`` with the generation prompt) and the text through it
(``messages[:i + 1]``) are rendered too, and both must be prefixes of the whole text. The
characters between them are the assistant's turn; it is labelled up to and including its
end-of-turn token (``<|im_end|>``, ``<|eot_id|>``, the tokenizer's EOS, ...), not what follows it
(the newline before the next turn). The fast tokenizer's offset mapping turns those character
spans into token labels. A template that renders earlier turns differently once later turns
follow (it is not *prefix-stable*) is refused with an error saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from martlet.errors import ConfigError, MartletError
from martlet.examples import IGNORE_INDEX

from martlet_hf import chat_templates as jinja

TRUNCATIONS = ("delete", "left", "right")
LOSS_SCOPES = ("all", "last")
#: end-of-turn tokens of common chat formats, looked for when a template names none
KNOWN_END_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
    "</s>",
)
#: tokens that open the next turn and also end the previous one (GLM)
NEXT_TURN_END_TOKENS = ("<|user|>", "<|observation|>")


class TemplateError(MartletError):
    """A conversation cannot be rendered or encoded with a template."""


class ChatTemplate:
    """Chat formatting for one tokenizer, with assistant-only labels for training.

    Built as ``cls(tokenizer, **options)``:

    Args:
        tokenizer: a fast Hugging Face tokenizer, or a processor holding one (``.tokenizer``).
        system: replaces the conversation's system prompt, or adds one where it has none.
        max_length: the most tokens an encoded conversation may have (None: no limit).
        truncation: what :meth:`encode` does with a longer one: ``delete`` (return None),
            ``left`` (drop tokens from the start) or ``right`` (drop them from the end).
            ``truncation_strategy`` is accepted as another name for it.
        loss_scope: ``all`` (every assistant turn is labelled) or ``last`` (only the last).
        fallback: for ``auto``, the registered template to use when the tokenizer ships no
            chat template (default: the one of the family the tokenizer's folder matches).

    Raises:
        ConfigError: an unknown option or a bad value.
        TemplateError: ``auto`` on a tokenizer that has no chat template and no fallback.
    """

    #: the registered name (set on each subclass)
    name: ClassVar[str] = "auto"
    #: the Jinja source, or None for the tokenizer's own chat template
    jinja: ClassVar[str | None] = None
    #: end-of-turn tokens of this format, besides the tokenizer's EOS
    end_tokens: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        tokenizer: Any,
        *,
        system: str | None = None,
        max_length: int | None = None,
        truncation: str = "delete",
        loss_scope: str = "all",
        fallback: str | None = None,
        **options: Any,
    ) -> None:
        if "truncation_strategy" in options:
            truncation = options.pop("truncation_strategy")
        if options:
            known = "system, max_length, truncation, loss_scope, fallback"
            raise ConfigError(
                f"unknown template option{'s' if len(options) > 1 else ''} "
                f"{', '.join(sorted(options))}",
                fix=f"template options are: {known}",
            )
        if tokenizer is None:
            raise ConfigError(f"template {self.name!r} needs a tokenizer, got None")
        self.processor = tokenizer
        self.tokenizer = getattr(tokenizer, "tokenizer", None) or tokenizer
        self.system = system
        self.max_length = _check_max_length(max_length)
        self.truncation = _choice("truncation", truncation, TRUNCATIONS)
        self.loss_scope = _choice("loss_scope", loss_scope, LOSS_SCOPES)
        self.chat_template = self._chat_template(fallback)
        self._ends = self._end_tokens()

    # ------------------------------------------------------------------ public

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """The text of ``messages`` (after the ``system`` option), as ``apply_chat_template``
        renders it."""
        prepared, _ = self._prepare(messages)
        return self._apply(prepared, tools, add_generation_prompt)

    def encode(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """Encode a conversation for training.

        Returns:
            ``input_ids``, ``attention_mask`` and ``labels`` (lists of ints of one length;
            labels are -100 except on the labelled assistant turns, end-of-turn token
            included) and ``truncated``: how many tokens ``max_length`` cut (0 when none).
            None when the conversation is longer than ``max_length`` and ``truncation`` is
            ``delete``.

        A message with ``"loss": False`` is never labelled, one with ``"loss": True`` always
        is; the others follow ``loss_scope``.

        Raises:
            TemplateError: malformed messages, or a template that is not prefix-stable.
        """
        prepared, flags = self._prepare(messages)
        text = self._apply(prepared, tools, False)
        spans = self._assistant_spans(prepared, flags, tools, text)
        ids, offsets = self._tokenize(text)
        labels = [IGNORE_INDEX] * len(ids)
        for k, (start, end) in enumerate(offsets):
            if end > start and any(a <= start < b for a, b in spans):
                labels[k] = ids[k]
        return self._truncate(ids, labels)

    def encode_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, list[int]]:
        """``input_ids`` and ``attention_mask`` of the prompt for generating the next assistant
        turn (the generation prompt added; no truncation)."""
        prepared, _ = self._prepare(messages)
        ids, _ = self._tokenize(self._apply(prepared, tools, True))
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} for {type(self.tokenizer).__name__}>"

    # ------------------------------------------------------------------ rendering

    def _chat_template(self, fallback: str | None) -> str | None:
        if self.jinja is not None:
            return self.jinja
        own = getattr(self.processor, "chat_template", None) or getattr(
            self.tokenizer, "chat_template", None
        )
        if own:
            return None  # apply_chat_template picks the tokenizer's own (and its tool variant)
        name = fallback or _family_template(self.tokenizer)
        if not name:
            from martlet.registry import names

            raise TemplateError(
                f"the tokenizer {_tokenizer_name(self.tokenizer)!r} has no chat template",
                why="the `auto` template renders with the tokenizer's own chat template",
                fix="name a registered template with --template NAME, one of: "
                + ", ".join(n for n in names("templates") if n != "auto"),
            )
        from martlet.registry import get

        cls = get("templates", name).load()
        source = getattr(cls, "jinja", None)
        if not source:
            raise TemplateError(f"template {name!r} has no Jinja source to fall back on")
        self.end_tokens = tuple(getattr(cls, "end_tokens", ()))
        return source

    def _apply(self, messages: list[dict], tools: Any, add_generation_prompt: bool) -> str:
        try:
            text = self.processor.apply_chat_template(
                messages,
                tools=list(tools) if tools else None,
                chat_template=self.chat_template,
                add_generation_prompt=add_generation_prompt,
                tokenize=False,
            )
        except MartletError:
            raise
        except Exception as exc:  # noqa: BLE001 - Jinja raises many kinds; all are the user's
            raise TemplateError(
                f"template {self.name!r} cannot render this conversation",
                why=f"{type(exc).__name__}: {exc}",
                fix="check the roles and their order, or choose another --template",
                cause=exc,
            ) from exc
        if isinstance(text, list):  # some processors return one text per conversation
            text = text[0]
        return text

    def _prepare(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list]:
        """Validated copies of the messages with the system option applied, and each message's
        ``loss`` flag (None where unset)."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise TemplateError(
                f"messages must be a list of {{'role': ..., 'content': ...}} mappings, "
                f"got {type(messages).__name__}"
            )
        if not messages:
            raise TemplateError("the conversation has no messages")
        out: list[dict] = []
        flags: list[bool | None] = []
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise TemplateError(f"message {i} is a {type(message).__name__}, not a mapping")
            role = message.get("role")
            if not isinstance(role, str) or not role:
                raise TemplateError(f"message {i} has no role", why=f"got {dict(message)!r}")
            content = message.get("content")
            if content is None and not message.get("tool_calls"):
                raise TemplateError(f"message {i} ({role}) has no content")
            if content is not None and not isinstance(content, (str, list)):
                raise TemplateError(
                    f"message {i} ({role}): content must be text, got {type(content).__name__}"
                )
            loss = message.get("loss")
            if loss is not None and not isinstance(loss, bool):
                raise TemplateError(f"message {i}: 'loss' must be true or false, got {loss!r}")
            out.append({k: v for k, v in message.items() if k != "loss"})
            flags.append(loss)
        if self.system is not None:
            if out[0]["role"] == "system":
                out[0] = {**out[0], "content": self.system}
            else:
                out.insert(0, {"role": "system", "content": self.system})
                flags.insert(0, None)
        return out, flags

    # ------------------------------------------------------------------ labels

    def _assistant_spans(
        self, messages: list[dict], flags: list, tools: Any, text: str
    ) -> list[tuple[int, int]]:
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        last = assistant[-1] if assistant else -1
        spans = []
        for i in assistant:
            wanted = flags[i] if flags[i] is not None else (self.loss_scope == "all" or i == last)
            if not wanted:
                continue
            if i == 0:
                raise TemplateError(
                    "the conversation starts with an assistant message",
                    fix="start it with a user (or system) message",
                )
            before = self._apply(messages[:i], tools, True)
            through = self._apply(messages[: i + 1], tools, False)
            if not (text.startswith(before) and text.startswith(through)) or len(through) < len(
                before
            ):
                raise TemplateError(
                    f"template {self.name!r} is not prefix-stable for this conversation",
                    why=f"rendering the messages up to assistant message {i} does not give a "
                    "prefix of the whole conversation's text (the template renders earlier "
                    "turns differently once later turns follow, e.g. it drops reasoning from "
                    "history)",
                    fix="use loss_scope='last' (--loss-scope last), or a registered template "
                    "with --template NAME",
                )
            spans.append((len(before), self._turn_end(text, len(before), len(through))))
        return spans

    def _turn_end(self, text: str, start: int, stop: int) -> int:
        """Where the labelled part of the turn ``text[start:stop]`` ends: after its last
        end-of-turn token, else after an end token opening the next turn, else at ``stop``."""
        turn = text[start:stop]
        best = -1
        for token in self._ends:
            pos = turn.rfind(token)
            if pos >= 0:
                best = max(best, pos + len(token))
        if best >= 0:
            return start + best
        for token in NEXT_TURN_END_TOKENS:
            if token in self._ends or token in self.end_tokens:
                continue
            if text.startswith(token, stop) and _is_special(self.tokenizer, token):
                return stop + len(token)
        return stop

    def _end_tokens(self) -> tuple[str, ...]:
        eos = getattr(self.tokenizer, "eos_token", None)
        found = list(self.end_tokens or KNOWN_END_TOKENS)
        if isinstance(eos, str) and eos and eos not in found:
            found.append(eos)
        return tuple(found)

    # ------------------------------------------------------------------ tokens

    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not getattr(self.tokenizer, "is_fast", False):
            raise TemplateError(
                f"the tokenizer {_tokenizer_name(self.tokenizer)!r} is not a fast tokenizer",
                why="encoding maps assistant text to tokens with a fast tokenizer's offsets",
                fix="load the tokenizer with use_fast=True (the tokenizers library)",
            )
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def _truncate(self, ids: list[int], labels: list[int]) -> dict[str, Any] | None:
        cut = 0
        if self.max_length is not None and len(ids) > self.max_length:
            cut = len(ids) - self.max_length
            if self.truncation == "delete":
                return None
            if self.truncation == "left":
                ids, labels = ids[cut:], labels[cut:]
            else:
                ids, labels = ids[: self.max_length], labels[: self.max_length]
        return {
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "labels": labels,
            "truncated": cut,
        }


# ---------------------------------------------------------------------- registered templates


class AutoTemplate(ChatTemplate):
    """The tokenizer's own chat template (``apply_chat_template``)."""

    name = "auto"


class ChatMLTemplate(ChatTemplate):
    name = "chatml"
    jinja = jinja.CHATML
    end_tokens = ("<|im_end|>",)


class QwenTemplate(ChatTemplate):
    name = "qwen"
    jinja = jinja.QWEN
    end_tokens = ("<|im_end|>",)


class Qwen2Template(ChatTemplate):
    name = "qwen2"
    jinja = jinja.QWEN2
    end_tokens = ("<|im_end|>",)


class Qwen3Template(ChatTemplate):
    name = "qwen3"
    jinja = jinja.QWEN3
    end_tokens = ("<|im_end|>",)


class Llama2Template(ChatTemplate):
    name = "llama2"
    jinja = jinja.LLAMA2
    end_tokens = ("</s>",)


class Llama3Template(ChatTemplate):
    name = "llama3"
    jinja = jinja.LLAMA3
    end_tokens = ("<|eot_id|>",)


class MistralTemplate(ChatTemplate):
    name = "mistral"
    jinja = jinja.MISTRAL
    end_tokens = ("</s>",)


class AlpacaTemplate(ChatTemplate):
    name = "alpaca"
    jinja = jinja.ALPACA
    end_tokens = ("</s>", "<|endoftext|>")


class GemmaTemplate(ChatTemplate):
    name = "gemma"
    jinja = jinja.GEMMA
    end_tokens = ("<end_of_turn>",)


class Phi3Template(ChatTemplate):
    name = "phi3"
    jinja = jinja.PHI3
    end_tokens = ("<|end|>",)


class Phi4Template(ChatTemplate):
    name = "phi4"
    jinja = jinja.PHI4
    end_tokens = ("<|im_end|>",)


class DeepSeekR1Template(ChatTemplate):
    name = "deepseek-r1"
    jinja = jinja.DEEPSEEK_R1
    end_tokens = ("<｜end▁of▁sentence｜>",)


class Glm4Template(ChatTemplate):
    name = "glm4"
    jinja = jinja.GLM4
    # a GLM-4 assistant turn ends where the model says <|user|> (or <|observation|>)
    end_tokens = ("<|endoftext|>",)


class InternLM2Template(ChatTemplate):
    name = "internlm2"
    jinja = jinja.INTERNLM2
    end_tokens = ("<|im_end|>",)


# ---------------------------------------------------------------------- helpers


def _choice(option: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if value is not None else ""
    if text not in choices:
        raise ConfigError(
            f"{option} must be one of {', '.join(choices)}, got {value!r}",
            fix=f"e.g. --{option.replace('_', '-')} {choices[0]}",
        )
    return text


def _check_max_length(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"max_length must be a positive integer or None, got {value!r}",
            fix="e.g. --max-length 2048",
        )
    return value


def _is_special(tokenizer: Any, token: str) -> bool:
    try:
        added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    except Exception:  # noqa: BLE001 - a tokenizer without added tokens has no such token
        added = {}
    return token in added or token in (getattr(tokenizer, "all_special_tokens", None) or ())


def _tokenizer_name(tokenizer: Any) -> str:
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def _family_template(tokenizer: Any) -> str | None:
    """The registered template of the family the tokenizer's folder matches, if any."""
    from martlet_hf.families import match_family

    path = getattr(tokenizer, "name_or_path", "")
    if not path:
        return None
    try:
        match = match_family(path)
    except MartletError:
        return None
    return match.template if match else None
