"""A tiny, offline causal language model and tokenizer for tests.

:func:`tiny_tokenizer` trains a byte-level BPE tokenizer (512 tokens, ChatML special tokens and
chat template) on a built-in corpus; :func:`tiny_model` builds a randomly initialised
Llama-architecture model of about 300k parameters for it. Both take well under a second, need
no network, and are deterministic for a given seed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

#: ChatML, with ``{% generation %}`` markers around assistant content so that
#: ``apply_chat_template(..., return_assistant_tokens_mask=True)`` works.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512

_CORPUS = """\
You are a helpful assistant. Who are you? I am an assistant made to help you.
What is the capital of France? The capital of France is Paris.
What is two plus two? Two plus two is four. Please answer the question.
Write a short poem about the sea. The sea is blue and the waves are wide.
Translate hello into French. Hello in French is bonjour.
Summarize the text in one sentence. The model reads the data and learns.
The quick brown fox jumps over the lazy dog. A tiny model trains on a tiny corpus.
system user assistant tool function call result name content role message
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: . , ; : ! ? ( ) [ ] { } " ' - _ / \\
你好，我是一个助手。你是谁？我是由开发者训练的语言模型。北京是中国的首都。
"""


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> Any:
    """A fresh ``PreTrainedTokenizerFast`` with ChatML special tokens and chat template.

    ``eos_token`` is ``<|im_end|>`` and ``pad_token`` is ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(tokenizer: Any = None, **overrides: Any) -> Any:
    """The ``LlamaConfig`` of the tiny model (2 layers, hidden size 96); ``overrides`` win."""
    from transformers import LlamaConfig

    tokenizer = tokenizer or tiny_tokenizer()
    values: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def tiny_model(seed: int = 0, tokenizer: Any = None, **config_overrides: Any) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` (float32, eval mode) of ~300k parameters.

    The global random state is left as it was; the same ``seed`` gives the same weights.
    """
    import torch
    from transformers import LlamaForCausalLM

    config = tiny_config(tokenizer, **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    if model.generation_config is not None:
        model.generation_config.pad_token_id = config.pad_token_id
        model.generation_config.eos_token_id = config.eos_token_id
    return model.eval()


def tiny_model_dir(path: str | Path, seed: int = 0) -> Path:
    """Save the tiny model and tokenizer as a Hugging Face folder (safetensors) at ``path``."""
    path = Path(path)
    tokenizer = tiny_tokenizer()
    model = tiny_model(seed=seed, tokenizer=tokenizer)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
