"""Chat templates: byte-identical rendering, exact assistant label masks, options and errors.

Run on the SDK's tiny tokenizer and on the embedded SmolLM2 tokenizer (its own chat template,
which adds a default system prompt when a conversation has none).
"""

from __future__ import annotations

import json

import martlet
import pytest
from martlet.errors import ConfigError
from martlet_hf import chat_templates
from martlet_hf.plugin import TEMPLATES
from martlet_hf.templates import IGNORE_INDEX, TemplateError

SYSTEM = {"role": "system", "content": "You are terse."}
Q1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "Paris."}
Q2 = {"role": "user", "content": "And of Italy? Answer in one word."}
A2 = {"role": "assistant", "content": "Rome, of course."}
TOOL_CALL = {"role": "assistant", "content": 'call weather(city="Paris")'}
TOOL_RESULT = {"role": "tool", "content": '{"temperature": 21}'}
A3 = {"role": "assistant", "content": "It is 21 degrees in Paris."}

CONVERSATIONS = {
    "single-turn": [Q1, A1],
    "system": [SYSTEM, Q1, A1],
    "multi-turn": [Q1, A1, Q2, A2],
    "multi-turn-system": [SYSTEM, Q1, A1, Q2, A2],
    "tool-messages": [Q1, TOOL_CALL, TOOL_RESULT, A3],
}


@pytest.fixture(params=["tiny", "smollm2"])
def tokenizer(request, tiny_tokenizer):
    if request.param == "tiny":
        return tiny_tokenizer
    return request.getfixturevalue("smollm2_tokenizer")


def labelled_runs(tokenizer, encoded) -> list[str]:
    """The decoded text of each run of consecutive labelled tokens."""
    runs, current = [], []
    for token, label in zip(encoded["input_ids"], encoded["labels"], strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def assistant_contents(messages) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant"]


# ---------------------------------------------------------------------- byte identity


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_render_is_byte_identical_to_apply_chat_template(tokenizer, case):
    messages = CONVERSATIONS[case]
    template = martlet.load_template(tokenizer)
    assert template.render(messages) == tokenizer.apply_chat_template(messages, tokenize=False)


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_generation_prompt_on_and_off(tokenizer, case):
    prompt = CONVERSATIONS[case][:-1]  # up to the last assistant answer
    template = martlet.load_template(tokenizer)
    for flag in (True, False):
        expected = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=flag)
        assert template.render(prompt, add_generation_prompt=flag) == expected
    on = template.render(prompt, add_generation_prompt=True)
    off = template.render(prompt)
    assert on.startswith(off) and on != off


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_encoded_ids_equal_apply_chat_template_ids(tokenizer, case):
    messages = CONVERSATIONS[case]
    encoded = martlet.load_template(tokenizer).encode(messages)
    expected = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    assert encoded["input_ids"] == list(expected["input_ids"])
    assert encoded["attention_mask"] == [1] * len(encoded["input_ids"])
    assert len(encoded["labels"]) == len(encoded["input_ids"])
    assert encoded["truncated"] == 0


def test_encode_prompt_equals_apply_chat_template_with_generation_prompt(tokenizer):
    prompt = [SYSTEM, Q1, A1, Q2]
    encoded = martlet.load_template(tokenizer).encode_prompt(prompt)
    expected = tokenizer.apply_chat_template(
        prompt, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    assert encoded == {
        "input_ids": list(expected["input_ids"]),
        "attention_mask": list(expected["attention_mask"]),
    }


# ---------------------------------------------------------------------- label masks


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_labels_are_exactly_the_assistant_turns_and_their_end_token(tokenizer, case):
    messages = CONVERSATIONS[case]
    encoded = martlet.load_template(tokenizer).encode(messages)
    expected = [content + "<|im_end|>" for content in assistant_contents(messages)]
    assert labelled_runs(tokenizer, encoded) == expected


def test_the_label_mask_agrees_with_the_generation_markers(tiny_tokenizer):
    # the tiny tokenizer's template marks assistant content + <|im_end|> with {% generation %}
    messages = CONVERSATIONS["multi-turn-system"]
    encoded = martlet.load_template(tiny_tokenizer).encode(messages)
    reference = tiny_tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    mask = [label != IGNORE_INDEX for label in encoded["labels"]]
    assert mask == [bool(m) for m in reference["assistant_masks"]]


def test_loss_scope_last_labels_only_the_last_answer(tokenizer):
    messages = CONVERSATIONS["multi-turn-system"]
    encoded = martlet.load_template(tokenizer, loss_scope="last").encode(messages)
    assert labelled_runs(tokenizer, encoded) == [A2["content"] + "<|im_end|>"]


def test_a_message_with_loss_false_is_not_labelled(tokenizer):
    messages = [Q1, {**A1, "loss": False}, Q2, A2]
    template = martlet.load_template(tokenizer)
    encoded = template.encode(messages)
    assert labelled_runs(tokenizer, encoded) == [A2["content"] + "<|im_end|>"]
    # the flag is not part of the rendered text
    assert template.render(messages) == tokenizer.apply_chat_template(
        [Q1, A1, Q2, A2], tokenize=False
    )


def test_a_message_with_loss_true_is_labelled_even_outside_the_scope(tokenizer):
    messages = [Q1, {**A1, "loss": True}, Q2, A2]
    encoded = martlet.load_template(tokenizer, loss_scope="last").encode(messages)
    assert labelled_runs(tokenizer, encoded) == [
        A1["content"] + "<|im_end|>",
        A2["content"] + "<|im_end|>",
    ]


def test_no_label_outside_assistant_turns_in_a_long_conversation(tiny_tokenizer):
    messages = [SYSTEM]
    for i in range(6):
        messages += [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    encoded = martlet.load_template(tiny_tokenizer).encode(messages)
    assert labelled_runs(tiny_tokenizer, encoded) == [f"answer {i}<|im_end|>" for i in range(6)]


# ---------------------------------------------------------------------- system option


def test_system_option_replaces_the_system_prompt(tokenizer):
    template = martlet.load_template(tokenizer, system="Answer in French.")
    messages = CONVERSATIONS["multi-turn-system"]
    expected = [{"role": "system", "content": "Answer in French."}, *messages[1:]]
    assert template.render(messages) == tokenizer.apply_chat_template(expected, tokenize=False)
    assert "You are terse." not in template.render(messages)


def test_system_option_adds_a_system_prompt(tokenizer):
    template = martlet.load_template(tokenizer, system="Answer in French.")
    messages = CONVERSATIONS["multi-turn"]
    expected = [{"role": "system", "content": "Answer in French."}, *messages]
    assert template.render(messages) == tokenizer.apply_chat_template(expected, tokenize=False)
    encoded = template.encode(messages)
    assert labelled_runs(tokenizer, encoded) == [
        A1["content"] + "<|im_end|>",
        A2["content"] + "<|im_end|>",
    ]


# ---------------------------------------------------------------------- truncation


def test_no_truncation_within_max_length(tiny_tokenizer):
    full = martlet.load_template(tiny_tokenizer).encode(CONVERSATIONS["multi-turn"])
    n = len(full["input_ids"])
    encoded = martlet.load_template(tiny_tokenizer, max_length=n).encode(
        CONVERSATIONS["multi-turn"]
    )
    assert encoded == full and encoded["truncated"] == 0


def test_truncation_delete_drops_the_row(tiny_tokenizer):
    template = martlet.load_template(tiny_tokenizer, max_length=8, truncation="delete")
    assert template.encode(CONVERSATIONS["multi-turn"]) is None


@pytest.mark.parametrize("strategy", ["left", "right"])
def test_truncation_left_and_right_keep_that_end_with_labels_aligned(tiny_tokenizer, strategy):
    messages = CONVERSATIONS["multi-turn"]
    full = martlet.load_template(tiny_tokenizer).encode(messages)
    n = len(full["input_ids"])
    keep = n - 7
    encoded = martlet.load_template(tiny_tokenizer, max_length=keep, truncation=strategy).encode(
        messages
    )
    part = slice(n - keep, n) if strategy == "left" else slice(0, keep)
    assert encoded["input_ids"] == full["input_ids"][part]
    assert encoded["labels"] == full["labels"][part]
    assert encoded["attention_mask"] == [1] * keep
    assert encoded["truncated"] == 7


def test_truncation_strategy_is_accepted_under_its_ms_swift_name(tiny_tokenizer):
    template = martlet.load_template(tiny_tokenizer, max_length=4, truncation_strategy="left")
    assert template.truncation == "left"
    assert len(template.encode(CONVERSATIONS["single-turn"])["input_ids"]) == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"truncation": "middle"}, "truncation must be one of delete, left, right"),
        ({"loss_scope": "first"}, "loss_scope must be one of all, last"),
        ({"max_length": 0}, "max_length must be a positive integer"),
        ({"max_length": "long"}, "max_length must be a positive integer"),
        ({"systme": "x"}, "unknown template option systme"),
    ],
)
def test_bad_options_are_config_errors(tiny_tokenizer, options, message):
    with pytest.raises(ConfigError) as info:
        martlet.load_template(tiny_tokenizer, **options)
    assert message in info.value.message()


# ---------------------------------------------------------------------- bad messages


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "the conversation has no messages"),
        ("hello", "messages must be a list"),
        ([{"content": "hi"}], "message 0 has no role"),
        ([{"role": "user"}], "message 0 (user) has no content"),
        ([{"role": "user", "content": 3}], "content must be text, got int"),
        ([Q1, {**A1, "loss": "yes"}], "'loss' must be true or false"),
        ([A1, Q1], "starts with an assistant message"),
        (["hi"], "message 0 is a str, not a mapping"),
    ],
)
def test_malformed_messages_are_template_errors(tiny_tokenizer, messages, message):
    with pytest.raises(TemplateError) as info:
        martlet.load_template(tiny_tokenizer).encode(messages)
    assert message in info.value.message()


def test_a_template_that_refuses_the_roles_says_so(tiny_tokenizer):
    tiny_tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}"
        "{{ raise_exception('only user and assistant roles') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(TemplateError) as info:
        martlet.load_template(tiny_tokenizer).encode([SYSTEM, Q1, A1])
    assert "cannot render this conversation" in info.value.what
    assert "only user and assistant roles" in info.value.why


# ---------------------------------------------------------------------- prefix stability

# renders earlier assistant turns without their content, as templates that drop reasoning do
UNSTABLE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' and not loop.last %}"
    "{{ '<|im_start|>assistant\n(earlier answer)<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_a_template_that_is_not_prefix_stable_is_refused_clearly(tiny_tokenizer):
    tiny_tokenizer.chat_template = UNSTABLE
    with pytest.raises(TemplateError) as info:
        martlet.load_template(tiny_tokenizer).encode(CONVERSATIONS["multi-turn"])
    assert "is not prefix-stable" in info.value.what
    assert "loss_scope='last'" in info.value.fix


def test_loss_scope_last_works_where_only_the_last_turn_is_stable(tiny_tokenizer):
    tiny_tokenizer.chat_template = UNSTABLE
    encoded = martlet.load_template(tiny_tokenizer, loss_scope="last").encode(
        CONVERSATIONS["multi-turn"]
    )
    assert labelled_runs(tiny_tokenizer, encoded) == [A2["content"] + "<|im_end|>"]


# ---------------------------------------------------------------------- auto and fallbacks


def test_auto_without_a_chat_template_names_the_registered_ones(tiny_tokenizer):
    tiny_tokenizer.chat_template = None
    with pytest.raises(TemplateError) as info:
        martlet.load_template(tiny_tokenizer)
    assert "has no chat template" in info.value.what
    assert "--template NAME" in info.value.fix and "chatml" in info.value.fix


def test_auto_falls_back_on_a_named_template(tiny_tokenizer):
    tiny_tokenizer.chat_template = None
    auto = martlet.load_template(tiny_tokenizer, fallback="llama3")
    llama3 = martlet.load_template(tiny_tokenizer, "llama3")
    messages = CONVERSATIONS["multi-turn-system"]
    assert auto.render(messages) == llama3.render(messages)
    assert auto.encode(messages) == llama3.encode(messages)


def test_auto_falls_back_on_the_family_template_of_the_folder(tmp_path, tiny_tokenizer):
    from transformers import AutoTokenizer

    folder = tmp_path / "Qwen2.5-tiny-base"
    tiny_tokenizer.chat_template = None
    tiny_tokenizer.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    loaded = AutoTokenizer.from_pretrained(folder)
    assert not loaded.chat_template
    template = martlet.load_template(loaded)
    assert template.chat_template == chat_templates.QWEN
    assert "You are Qwen, created by Alibaba Cloud." in template.render([Q1, A1])


def test_a_slow_tokenizer_is_refused_for_encoding(tiny_tokenizer):
    class SlowTokenizer:  # the surface of a slow tokenizer that encoding needs
        is_fast = False
        name_or_path = "slow-one"
        chat_template = tiny_tokenizer.chat_template
        eos_token = "<|im_end|>"

        def apply_chat_template(self, *args, **kwargs):
            return tiny_tokenizer.apply_chat_template(*args, **kwargs)

    template = martlet.load_template(SlowTokenizer())
    assert template.render([Q1, A1]) == tiny_tokenizer.apply_chat_template([Q1, A1], tokenize=False)
    with pytest.raises(TemplateError) as info:
        template.encode([Q1, A1])
    assert "not a fast tokenizer" in info.value.what


def test_template_needs_a_tokenizer():
    with pytest.raises(ConfigError):
        martlet.load_template(None)


# ---------------------------------------------------------------------- registered templates

# what each registered template labels for an answer: (before the content, after it)
LABELLED = {
    "auto": ("", "<|im_end|>"),
    "chatml": ("", "<|im_end|>"),
    "qwen": ("", "<|im_end|>"),
    "qwen2": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"),
    "internlm2": ("", "<|im_end|>"),
    "phi4": ("", "<|im_end|>"),
    "llama2": (" ", " <|im_end|>"),  # " answer </s>" with the tiny tokenizer's EOS
    "mistral": ("", "<|im_end|>"),
    "alpaca": ("", "<|im_end|>"),
    "llama3": ("", "<|eot_id|>"),
    "gemma": ("", "<end_of_turn>"),
    "phi3": ("", "<|end|>"),
    "deepseek-r1": ("", "<｜end▁of▁sentence｜>"),
    "glm4": ("", ""),  # a GLM-4 turn ends with the next <|user|>, not a token of its own
}


def test_every_registered_template_is_listed_here():
    assert set(LABELLED) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_registered_template_labels_each_answer(tiny_tokenizer, name):
    template = martlet.load_template(tiny_tokenizer, name)
    messages = CONVERSATIONS["multi-turn-system"]
    text = template.render(messages)
    assert text == tiny_tokenizer.apply_chat_template(
        messages, tokenize=False, chat_template=template.chat_template
    )
    for content in ("You are terse.", Q1["content"], A1["content"], Q2["content"], A2["content"]):
        assert content in text
    before, after = LABELLED[name]
    encoded = template.encode(messages)
    assert labelled_runs(tiny_tokenizer, encoded) == [
        before + c + after for c in assistant_contents(messages)
    ]
    prompt = template.render(messages[:-1], add_generation_prompt=True)
    assert text.startswith(prompt)


@pytest.mark.parametrize("name", ["llama3", "gemma", "phi3", "mistral", "deepseek-r1"])
def test_registered_template_on_a_tokenizer_without_its_tokens(smollm2_tokenizer, name):
    # SmolLM2 lacks these formats' special tokens: the text still renders and encodes
    encoded = martlet.load_template(smollm2_tokenizer, name).encode(CONVERSATIONS["multi-turn"])
    runs = labelled_runs(smollm2_tokenizer, encoded)
    assert len(runs) == 2 and A1["content"] in runs[0] and A2["content"] in runs[1]


# ---------------------------------------------------------------------- tools

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    },
    {"role": "tool", "content": '{"temperature": 21}'},
    {"role": "assistant", "content": "21 degrees."},
]


@pytest.mark.parametrize("name", ["qwen", "qwen2", "qwen3"])
def test_tool_calls_and_results_with_a_template_that_supports_them(tokenizer, name):
    template = martlet.load_template(tokenizer, name)
    text = template.render(TOOL_CONVERSATION, tools=TOOLS)
    assert text == tokenizer.apply_chat_template(
        TOOL_CONVERSATION, tools=TOOLS, chat_template=template.chat_template, tokenize=False
    )
    assert "<tools>" in text and '"name": "get_weather"' in text
    assert "<tool_response>\n" + '{"temperature": 21}' + "\n</tool_response>" in text
    encoded = template.encode(TOOL_CONVERSATION, tools=TOOLS)
    runs = labelled_runs(tokenizer, encoded)
    assert runs == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        "<|im_end|>",
        "21 degrees.<|im_end|>",
    ]
    assert not any("temperature" in run for run in runs)  # the tool's result is input
    assert template.render(TOOL_CONVERSATION[:1], tools=TOOLS, add_generation_prompt=True) == (
        tokenizer.apply_chat_template(
            TOOL_CONVERSATION[:1],
            tools=TOOLS,
            chat_template=template.chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )
    )
