"""``martlet plugin new``: write a ready plugin package for one capability kind.

The package has a ``pyproject.toml`` with the ``martlet`` entry point, a plugin module with one
working hook implementation, the implementation itself, a test that subclasses the kind's
contract, and a README. ``pip install -e DIR`` then ``pytest DIR`` passes as generated.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from martlet import __version__ as core_version
from martlet.errors import ConfigError
from martlet.manager import PLUGIN_API
from martlet.records import KINDS, check_kind

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

_PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$summary"
readme = "README.md"
requires-python = ">=3.10"
dependencies = [$deps]

[project.optional-dependencies]
test = ["martlet-plugin-sdk$sdk_spec", "pytest>=8"]

[project.entry-points.martlet]
$name = "$module.plugin"

[tool.setuptools.packages.find]
where = ["src"]
$package_data""")

# data files inside the package ship in the wheel only when listed here
_PACKAGE_DATA = Template("""
[tool.setuptools.package-data]
$module = [$globs]
""")

_PLUGIN = Template('''\
"""Martlet plugin $dist: registers the $label '$record_name'.

Keep this module light: it is imported by every `martlet` command, so import heavy
libraries (torch, transformers, ...) only inside the implementation module.
"""

from martlet import hookimpl
from martlet.records import $record_cls

MARTLET_API = $api  # the Martlet plugin API this plugin was written for


@hookimpl
def martlet_$kind():
    yield $record_cls(
$fields    )
''')

_TEST = Template('''\
"""$dist against the Martlet contract for $kind."""

import pytest

from martlet_sdk.contracts import $contract


class Test${class_name}($contract):
    @pytest.fixture
    def plugin(self):
        return "$name"  # the installed plugin, loaded through its entry point

    @pytest.fixture
    def record_name(self):
        return "$record_name"
$extra_fixtures''')

_README = Template("""\
# $dist

A [Martlet](https://pypi.org/project/martlet/) plugin that registers the $label
`$record_name`.

```
pip install -e .            # then: martlet plugins --kind $kind
pip install -e ".[test]" && pytest
```

$layout
The test in `tests/` runs the Martlet contract for $kind against the installed plugin.
$notes""")

_LAYOUT_IMPL = (
    "`src/$module/plugin.py` yields the record; `src/$module/impl.py` holds the implementation,\n"
    "imported only when the $label is used."
)
_LAYOUT_DATA_ONLY = (
    "`src/$module/plugin.py` yields the record. The record is data only (it names no\n"
    "implementation), so there is no `impl.py`."
)

# What the README says besides the layout, per kind.
_NOTES = {
    "datasets": """
## The data file

The record's `path` is `"$module:data/$record_name.jsonl"`: the form `"PACKAGE:RELATIVE/PATH"`
names a file (or a folder of data files) inside an installed package, found with
`importlib.resources`, so it works from a wheel, a zip or an editable install alike. A wheel
holds only the data files `pyproject.toml` lists, under `[tool.setuptools.package-data]`
(here `data/*.jsonl`); add a pattern there for every other file you ship (`data/*.parquet`).

`src/$module/data/$record_name.jsonl` holds the raw rows. `format` says how they become
Martlet's canonical rows (`messages`, `sharegpt`, `alpaca`, `query_response`, `preference`,
`kto`, `text`; leave it out to detect it per row). `impl` names an optional preprocessor,
`src/$module/impl.py`: `fn(row, **options) -> row` (or a list of rows, or `[]` to drop the
row), applied to each raw row before the conversion; its `keep` attribute lists extra columns
the canonical rows keep. Remove `impl=` when your file is already in one of the formats.

Read it as users will (martlet-data reads named datasets):

```
martlet dataset info $record_name
python -c "import martlet; print(martlet.load_dataset('$record_name')[0])"
```

The contract test loads the rows through the record, from the installed package, and checks
each is a canonical row of the record's format.
""",
    "losses": """
## How the loss is called

The record says `inputs="batch"`: the training loop calls `$func(model, batch)` with a
collated batch (`input_ids` and `labels`, -100 where nothing is learned, plus `attention_mask`
for padded batches or `position_ids` for packed and padding-free ones) and takes back
`(loss_sum, count, metrics)`: the loss *summed* over the batch's target tokens, their count,
and metrics as `name -> (sum, n)`. The loop divides by the target tokens of the whole
optimizer step, so never return a mean. This is the shape of the `sft` and `pt` losses;
`martlet rlhf --method NAME` takes losses whose `inputs` are `logps`, `rewards` or `logits`
instead (see `martlet.records.LossRecord`).

Its options are the fields of `Options` (named by the record's `options=`): train with
`martlet sft --loss $record_name --label-smoothing 0.1` (or `loss: {name: $record_name,
label_smoothing: 0.1}` in a `--config` file); `martlet sft --loss $record_name --help` lists
them, and the loop passes them to `$func` as keyword arguments. Keep `impl.py` importable
without torch at module level: the CLI imports `Options` from it to parse flags.
""",
    "callbacks": """
## Its options

`Options` (named by the record's `options=`) declares `--json-stream`: a run that names the
callback takes it, `martlet sft ... --report-to $record_name --json-stream stdout` (or
`json_stream: stdout` in a `--config` file), and the loop builds the callback as
`$cls(output_dir=OUTPUT_DIR, json_stream="stdout")`. `martlet sft --report-to $record_name
--help` lists it; without `--report-to $record_name` the flag is refused.
""",
}

_NOTES["rewards"] = """
## How the reward is called

A training command that generates (`martlet rlhf --method grpo`) builds it once as
`$cls(max_completion_length=N, device=DEVICE, **options)` and calls it on every batch of
generated completions as TRL's `GRPOTrainer` calls a reward function:
`reward(prompts=..., completions=..., completion_ids=..., **columns)` — prompts as
conversations, completions as texts (TRL passes a chat dataset's as lists of messages:
`martlet.rewards.text_of` reads both), each dataset column as a list with one value per
completion. Return one float per completion, or None where the reward does not apply (not
NaN: the trainer refuses NaN, and any exception, naming the reward); the run's reward is the
weighted sum of its rewards (`--reward-weights`), a None left out. A column the reward needs
goes in the record's `columns=("solution",)`: a dataset without it is refused before training.

Its options are the fields of `Options` (named by the record's `options=`): `martlet rlhf
--method grpo --reward-funcs $record_name --target-words 80`; `martlet rlhf --method grpo
--reward-funcs $record_name --help` lists them, and without `--reward-funcs $record_name` they
are refused, naming it.
"""

#: the README's options note for the kinds a command selects by a flag
_OPTIONS_NOTE = """
## Options

To give the $label settings of its own, declare a dataclass of `martlet.config.option` fields
in a module without heavy imports and name it in the record (`options="$module.impl:Options"`).
When a user selects this $label (`$selector $record_name`), its flags are accepted, listed by
`martlet sft $selector $record_name --help` and passed to it as keyword arguments; without
the selection they are refused, naming it. The contract test
`test_declared_options_reach_a_command_that_selects_the_record` checks the declaration.
"""
for _kind, _selector in (
    ("model_loaders", "--model-loader"),
    ("templates", "--template"),
    ("dataset_sources", "--dataset-source"),
):
    _NOTES[_kind] = _OPTIONS_NOTE.replace("$selector", _selector)

# Per kind: the record's fields, the implementation module, and extra dependencies.
_IMPLS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "commands": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$func",\n'
        '        summary="Say hello (a command from $dist).",\n',
        '''\
"""The `martlet $record_name` command."""

from dataclasses import dataclass

import click

from martlet.cli import config_command
from martlet.config import option


@dataclass
class HelloConfig:
    name: str = option("world", help="Who to greet.")
    times: int = option(1, help="How many times.")


@config_command(HelloConfig, name="$record_name")
def $func(config: HelloConfig) -> None:
    """Say hello."""
    for _ in range(config.times):
        click.echo(f"hello, {config.name}")
''',
        (),
    ),
    "accelerators": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        '        device_type="cpu",\n'
        '        requires=("torch",),\n'
        '        summary="An accelerator from $dist (starts as the host CPU).",\n',
        '''\
"""The $record_name accelerator. Point `device_type` and the methods at your device."""

import os

import torch


class $cls:
    device_type = "cpu"

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def device(self, index: int = 0) -> torch.device:
        return torch.device(self.device_type)

    def supported_dtypes(self) -> list[str]:
        return ["float32", "bfloat16"]

    def preferred_dtype(self) -> str:
        return "float32"

    def memory_stats(self, index: int = 0) -> dict[str, int]:
        page = os.sysconf("SC_PAGE_SIZE")
        return {
            "total": page * os.sysconf("SC_PHYS_PAGES"),
            "free": page * os.sysconf("SC_AVPHYS_PAGES"),
        }

    def distributed_backend(self) -> str:
        return "gloo"

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def synchronize(self) -> None:
        pass
''',
        ("torch",),
    ),
    "kernels": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        '        devices=("cpu",),  # where it applies (empty: anywhere)\n'
        "        dtypes=(),  # the compute dtypes it applies to (empty: any)\n"
        '        replaces="nothing yet",\n'
        '        summary="A kernel from $dist.",\n',
        '''\
"""The $record_name kernel: switch the layers it supports for the length of a run."""

import contextlib


class $cls:
    @contextlib.contextmanager
    def applied(self, model, *, device, dtype):
        # find the modules you replace, give each a new forward (module.forward = ...), and
        # yield how many; give them their own forward back afterwards, even on an error.
        # A computation that is not a layer (martlet.kernels.OPS) is offered with
        # `with martlet.kernels.provide(model, NAME, fn):` around the yield, and NAME listed
        # in the record's provides=(...)
        switched = []
        try:
            yield len(switched)
        finally:
            for module in switched:
                vars(module).pop("forward", None)
''',
        (),
    ),
    "rewards": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        '        options="$module.impl:Options",  # its flags: --target-words\n'
        '        columns=(),  # the dataset columns it reads, e.g. ("solution",)\n'
        '        summary="Scores completions by their length in words (a reward from $dist).",\n',
        '''\
"""The $record_name reward: scores each generated completion.

The trainer builds it as ``$cls(max_completion_length=N, device=DEVICE, **options)`` — its
options (:class:`Options`, named by the record) come as keyword arguments when a run names it:
``--reward-funcs $record_name --target-words 80`` — and calls it on every batch of completions
as TRL does: ``reward(prompts=..., completions=..., completion_ids=..., **columns)``.
"""

from dataclasses import dataclass

from martlet.config import option, require
from martlet.rewards import text_of


@dataclass(kw_only=True)
class Options:
    """$record_name: completions of about this many words score best"""

    target_words: int = option(50, help="The length in words that scores best.")

    def __post_init__(self):
        require(self.target_words >= 1, "target-words", self.target_words, "at least 1", "50")


class $cls:
    def __init__(self, *, target_words=50, **run) -> None:
        # run: max_completion_length and device, what the training run is; unused here
        self.target = target_words

    def __call__(self, prompts, completions, **kwargs):
        # prompts: conversations; completions: texts (or TRL's messages: text_of reads both);
        # kwargs: completion_ids and the dataset's columns, one value per completion.
        # One float per completion, or None where the reward does not apply.
        scores = []
        for completion in completions:
            words = len(text_of(completion).split())
            scores.append(-abs(words - self.target) / self.target)
        return scores
''',
        (),
    ),
    "callbacks": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        '        options="$module.impl:Options",  # its flags: --json-stream\n'
        '        summary="Print metrics as JSON lines (a callback from $dist).",\n',
        '''\
"""The $record_name callback: prints each log as a JSON line.

Its options (:class:`Options`, named by the record) come as keyword arguments when a run
names it: ``martlet sft ... --report-to $record_name --json-stream stdout``.
"""

import json
import sys
from dataclasses import dataclass
from typing import Literal

from martlet.config import option


@dataclass(kw_only=True)
class Options:
    """$record_name: metrics as JSON lines"""

    json_stream: Literal["stderr", "stdout"] = option(
        "stderr", help="Where the JSON lines go."
    )


class $cls:
    def __init__(self, output_dir=".", json_stream="stderr", **_) -> None:
        self.stream = sys.stdout if json_stream == "stdout" else sys.stderr

    def on_log(self, step: int, metrics) -> None:
        print(json.dumps({"step": step, **dict(metrics)}), file=self.stream)

    def on_end(self) -> None:
        self.stream.flush()
''',
        (),
    ),
    "losses": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$func",\n'
        '        data="messages",\n'
        '        inputs="batch",  # called as $func(model, batch) -> (loss_sum, count, metrics)\n'
        '        options="$module.impl:Options",  # its flags: --label-smoothing\n'
        '        summary="Token cross-entropy (a loss from $dist).",\n',
        '''\
"""The $record_name loss: cross-entropy over the tokens whose label is not -100.

The training loop calls it as ``$func(model, batch)`` with a collated batch: ``input_ids`` and
``labels`` (``[batch, seq]``; -100 where nothing is learned) plus ``attention_mask`` (padded
batches) and/or ``position_ids`` (packed and padding-free batches). It returns
``(loss_sum, count, metrics)``: the loss *summed* over the target tokens, how many there were,
and metrics as ``name -> (sum, n)`` (logged as sum / n). The loop divides by the target tokens
of the whole optimizer step, so a batch split into micro-batches, or over several processes,
gives the same update: never return a mean. Its options (:class:`Options`) come as keyword
arguments.
"""

from dataclasses import dataclass

from martlet.config import option, require

IGNORE = -100


@dataclass(kw_only=True)
class Options:
    """$record_name: token cross-entropy"""

    label_smoothing: float = option(
        0.0, help="Spread this share of each target's probability over the vocabulary."
    )

    def __post_init__(self):
        value = self.label_smoothing
        require(0 <= value < 1, "label-smoothing", value, "in [0, 1)", "0.1")


def $func(model, batch, *, label_smoothing=0.0):
    import torch.nn.functional as F

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    labels = batch["labels"]
    logits = model(**inputs).logits[:, -labels.shape[1] :]  # prompt tuning prepends tokens
    targets = labels[:, 1:]  # logits[:, t] predicts labels[:, t + 1]
    predicts = targets != IGNORE
    logits = logits[:, :-1][predicts].float()
    targets = targets[predicts]
    loss_sum = F.cross_entropy(logits, targets, reduction="sum", label_smoothing=label_smoothing)
    count = predicts.sum()
    correct = (logits.detach().argmax(-1) == targets).sum()
    return loss_sum, count, {"token_accuracy": (correct, count)}
''',
        (),
    ),
    "tuners": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        '        requires=("torch", "safetensors"),\n'
        '        capabilities={"train", "merge"},\n'
        '        options="$module.impl:Options",  # its flags: --trainable-pattern\n'
        '        saves=("norm_weights.safetensors",),  # checked before a run loads\n'
        '        summary="Train only the normalisation weights (a tuner from $dist).",\n',
        '''\
"""The $record_name tuner: only the weights of normalisation layers train.

Replace the parameter selection in prepare() with your method; keep save/load/restore/merge.
Its options (:class:`Options`, named by the record) reach ``prepare`` as attributes of
``config``: ``martlet sft --tuner $record_name --trainable-pattern norm``. Keep this module
importable without torch at module level: the CLI imports ``Options`` from it.
"""

from dataclasses import dataclass
from pathlib import Path

from martlet.config import option, require

FILE = "norm_weights.safetensors"


@dataclass(kw_only=True)
class Options:
    """$record_name: train the normalisation weights only"""

    trainable_pattern: str = option(
        "norm", help="Train the parameters whose name contains this text."
    )

    def __post_init__(self):
        value = self.trainable_pattern
        require(bool(value.strip()), "trainable-pattern", value, "some text", "norm")


class $cls:
    def prepare(self, model, config):
        self.pattern = config.trainable_pattern
        model.requires_grad_(False)
        for name, param in model.named_parameters():
            if self.pattern in name:
                param.requires_grad_(True)
        return model

    def save(self, model, output_dir):
        from safetensors.torch import save_file

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        pattern = getattr(self, "pattern", "norm")
        trained = {n: p.detach().contiguous() for n, p in model.named_parameters() if pattern in n}
        save_file(trained, str(Path(output_dir) / FILE))

    def load(self, model, path):
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(str(Path(path) / FILE)), strict=False)
        if unexpected:
            raise ValueError(f"weights in {path} do not fit this model: {unexpected[:3]}")
        return model

    def restore(self, model, path):
        return self.load(model, path)

    def merge(self, model):
        return model  # the trained weights are the model's own
''',
        ("torch", "safetensors"),
    ),
    "quantizers": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        "        bits=(4, 8),  # the widths it supports (others are refused before loading)\n"
        '        stages=("load",),  # load time: --quant-method $record_name on sft/infer/deploy\n'
        '        options="$module.impl:Options",  # its flags: --rtn-group-size\n'
        '        summary="Round-to-nearest weights, simulated (a quantizer from $dist).",\n',
        '''\
"""The $record_name quantizer: round-to-nearest, symmetric, per group of input columns.

A teaching example of the interface: the linear layers' weights are rounded to ``bits`` bits
and kept in their dtype (simulated quantization: the outputs carry the rounding error, the
memory does not shrink). A real quantizer returns a transformers ``quantization_config`` from
``quantize_on_load``, or swaps in layers that keep packed weights in ``quantize_loaded``.
Its options (:class:`Options`) arrive as keyword arguments: ``--rtn-group-size 64``. Keep this
module importable without torch at module level: the CLI imports ``Options`` from it.
"""

from dataclasses import dataclass

from martlet.config import option, require


@dataclass(kw_only=True)
class Options:
    """$record_name: round-to-nearest weights"""

    rtn_group_size: int = option(32, help="Input columns that share one scale.", metavar="N")

    def __post_init__(self):
        size = self.rtn_group_size
        require(size > 0, "rtn-group-size", size, "a positive number of columns", "32")


class $cls:
    def quantize_on_load(self, bits, **options):
        return None  # nothing for from_pretrained: quantize_loaded does the work

    def quantize_loaded(self, model, bits, rtn_group_size=32, **options):
        import torch

        output = model.get_output_embeddings()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear) and module is not output:
                    module.weight.copy_(_rounded(module.weight, bits, rtn_group_size))
        return model


def _rounded(weight, bits, group_size):
    rows, cols = weight.shape
    if cols % group_size:
        group_size = cols  # one group per row when the columns do not divide
    groups = weight.float().reshape(rows, cols // group_size, group_size)
    top = 2 ** (bits - 1) - 1
    scale = groups.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / top
    codes = (groups / scale).round().clamp(-top - 1, top)
    return (codes * scale).reshape(rows, cols).to(weight.dtype)
''',
        ("torch",),
    ),
    "eval_tasks": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        "        # PACKAGE:RELATIVE/PATH, a file shipped inside the installed package (listed\n"
        "        # under [tool.setuptools.package-data] in pyproject.toml), or a local file\n"
        '        dataset="$module:data/$record_name.jsonl",\n'
        '        metric="acc",  # the metric process() returns that listings show\n'
        '        summary="A multiple-choice quiz (an eval task from $dist).",\n',
        '''\
"""The $record_name eval task: multiple-choice questions scored by the log-likelihood of each
choice's letter after the prompt, as lm-evaluation-harness scores MMLU.

``martlet eval --tasks $record_name`` builds ``$cls(dataset=..., **options)``, asks ``docs``
for the questions and ``requests`` for what the model must answer for each (few-shot examples
first when ``--num-fewshot`` asks for them), has the model answer, and hands the answers to
``process`` (see martlet.interfaces.EvalTask).
"""

import json
from importlib import resources
from pathlib import Path

from martlet.evaluation import Loglikelihood, turns

LETTERS = "ABCDEFGH"


class $cls:
    def __init__(self, dataset=None, **options):
        self.dataset = dataset or "$module:data/$record_name.jsonl"

    def docs(self, limit=None):
        package, _, path = self.dataset.partition(":")
        if path and not Path(self.dataset).exists():
            text = resources.files(package).joinpath(path).read_text(encoding="utf-8")
        else:
            text = Path(self.dataset).read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return rows if limit is None else rows[:limit]

    def question(self, doc):
        lines = [doc["question"]]
        lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(doc["choices"])]
        return "\\n".join(lines) + "\\nAnswer:"

    def requests(self, doc, fewshot):
        shots = [(self.question(d), d["answer"]) for d in fewshot]
        conversation = turns(self.question(doc), shots)
        return [Loglikelihood(conversation, LETTERS[i]) for i in range(len(doc["choices"]))]

    def process(self, doc, results):
        best = max(range(len(results)), key=lambda i: results[i].logprob)
        return {"acc": float(LETTERS[best] == doc["answer"])}
''',
        (),
    ),
    "models": (
        '        name="$record_name",\n'
        '        family="smollm2",\n'
        '        hub_ids={"huggingface": "HuggingFaceTB/SmolLM2-135M-Instruct"},\n'
        '        size="135M",\n'
        '        summary="A model id from $dist.",\n',
        "",
        (),
    ),
    "datasets": (
        '        name="$record_name",\n'
        "        # PACKAGE:RELATIVE/PATH, a file shipped inside the installed package (listed\n"
        "        # under [tool.setuptools.package-data] in pyproject.toml, or the wheel lacks it)\n"
        '        path="$module:data/$record_name.jsonl",\n'
        '        format="query_response",\n'
        "        # the preprocessor of each raw row (optional): src/$module/impl.py\n"
        '        impl="$module.impl:$func",\n'
        '        tags=("sft", "en"),\n'
        '        summary="A dataset from $dist.",\n',
        '''\
"""The preprocessor of the $record_name dataset: one raw row of
``data/$record_name.jsonl`` -> a row in the record's ``format`` (``query_response``).

martlet-data calls ``$func(row, **options)`` on each raw row before converting it to a
canonical row; return a row, a list of rows, or ``[]`` to drop it. Raise ``RowProblem`` for a
row you cannot use: the error names the file and line (``--on-bad-rows skip`` skips it).
``options`` holds ``model_name`` and ``model_author``.
"""

from martlet_data.errors import RowProblem


def $func(row, **options):
    question, answer = row.get("q"), row.get("a")
    if not isinstance(question, str) or not isinstance(answer, str):
        raise RowProblem("missing field", "a row needs the strings 'q' and 'a'")
    return {"query": question.strip(), "response": answer.strip(), "topic": row.get("topic")}


$func.keep = ("topic",)  # extra columns the canonical rows keep
''',
        ("martlet-data$core_spec",),  # reads the rows of named datasets
    ),
}

# Per kind: data files shipped inside the package (under src/MODULE/), listed as package-data.
_DATA_FILES: dict[str, dict[str, str]] = {
    "eval_tasks": {
        "$record_name.jsonl": (
            '{"question": "What is the capital of France?", "choices": ["Rome", "Paris"], '
            '"answer": "B"}\n'
            '{"question": "What is two plus two?", "choices": ["4", "5", "22"], "answer": "A"}\n'
            '{"question": "Which is a colour?", "choices": ["green", "seven"], "answer": "A"}\n'
        ),
    },
    "datasets": {
        "$record_name.jsonl": (
            '{"q": "What is the capital of France?", "a": "Paris.", "topic": "geography"}\n'
            '{"q": "What is two plus two?", "a": "Four.", "topic": "arithmetic"}\n'
            '{"q": "Name a primary colour.", "a": "Red, yellow or blue.", "topic": "art"}\n'
        ),
    },
}

#: fixtures a kind's generated test adds (the tuner contract builds its config from the
#: record's options by default)
_EXTRA_FIXTURES: dict[str, str] = {}

_SKELETON_FIELDS = (
    '        name="$record_name",\n'
    '        impl="$module.impl:$cls",\n'
    "$extra"
    '        summary="A $label from $dist.",\n'
)

_SKELETON_METHODS: dict[str, tuple[str, ...]] = {
    "model_loaders": (
        "can_load(self, source)",
        "load(self, source, **options)",
        "load_tokenizer(self, source, **options)",
    ),
    "templates": (
        "__init__(self, tokenizer=None, **options)",
        "render(self, messages, *, add_generation_prompt=False)",
        "encode(self, messages)",
    ),
    "dataset_sources": (
        "can_read(self, spec, *, hub=None)",
        "read(self, spec, *, streaming=False, **options)",
    ),
    "parallel_strategies": (
        "__init__(self, **options)",
        "accelerator_kwargs(self, *, world_size, device)",
    ),
    "quantizers": ("quantize_on_load(self, bits, **options)",),
    "inference_backends": (
        "__init__(self, model=None, tokenizer=None, **options)",
        "generate(self, requests, **generation)",
        "stream(self, messages, **generation)",
    ),
    "eval_tasks": (
        "__init__(self, dataset=None, **options)",
        "docs(self, limit=None)",
        "requests(self, doc, fewshot)",
        "process(self, doc, results)",
    ),
}
_SKELETON_EXTRA = {"quantizers": '        bits=(4, 8),\n        stages=("load",),\n'}


def _skeleton(kind: str) -> str:
    lines = [
        f'"""The $record_name {KINDS[kind].label}: write each method (see martlet.interfaces)."""',
        "",
        "",
        "class $cls:",
    ]
    for sig in _SKELETON_METHODS[kind]:
        method = sig.split("(")[0]
        lines.append(f"    def {sig}:")
        if method == "__init__":
            lines.append("        self.options = dict(locals())")
        else:
            lines.append(
                f'        raise NotImplementedError("$dist: {method}() is not written yet")'
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def module_name(name: str) -> str:
    """``acme-hello`` -> ``martlet_acme_hello``."""
    return "martlet_" + name.removeprefix("martlet-").replace("-", "_")


def new_plugin(name: str, kind: str, output: str | Path = ".", force: bool = False) -> Path:
    """Write a plugin package ``martlet-NAME`` for ``kind`` under ``output``; return its folder.

    Raises:
        ConfigError: a bad name, an unknown kind, or an existing folder (without ``force``).
    """
    if not NAME_RE.match(name):
        raise ConfigError(
            f"invalid plugin name {name!r}",
            why="use lowercase letters, digits and single hyphens, starting with a letter",
            fix="e.g. `martlet plugin new acme-lora --kind tuners`",
        )
    kind = check_kind(kind).kind
    short = name.removeprefix("martlet-")
    dist = f"martlet-{short}"
    module = module_name(short)
    root = Path(output) / dist
    if root.exists() and any(root.iterdir()) and not force:
        raise ConfigError(
            f"{root} already exists and is not empty",
            fix="choose another --output or name, or pass --force to overwrite",
        )
    record_cls = KINDS[kind].__name__
    cls = "".join(part.capitalize() for part in short.split("-"))
    fields, impl, deps = _IMPLS.get(
        kind,
        (
            _SKELETON_FIELDS.replace("$extra", _SKELETON_EXTRA.get(kind, "")),
            _skeleton(kind) if kind in _SKELETON_METHODS else "",
            (),
        ),
    )
    major, minor = (int(x) for x in core_version.split(".")[:2])
    values = dict(
        dist=dist,
        name=short,
        module=module,
        kind=kind,
        label=KINDS[kind].label,
        record_cls=record_cls,
        record_name=short,
        cls=cls,
        func=module.removeprefix("martlet_"),
        class_name=cls,
        contract=_contract_name(kind),
        api=str(PLUGIN_API),
        summary=f"A Martlet plugin: the {KINDS[kind].label} {short}",
        sdk_spec=f">={major}.{minor},<{major}.{minor + 1}",
    )
    values["core_spec"] = values["sdk_spec"]
    values["deps"] = ", ".join(
        f'"{Template(d).substitute(values)}"' for d in ("martlet-core$core_spec", *deps)
    )
    values["fields"] = Template(fields).substitute(values)
    values["extra_fixtures"] = _EXTRA_FIXTURES.get(kind, "")
    data = {
        f"data/{rel}".replace("$record_name", short): text
        for rel, text in _DATA_FILES.get(kind, {}).items()
    }
    globs = sorted({f"{Path(rel).parent.as_posix()}/*{Path(rel).suffix}" for rel in data})
    values["package_data"] = (
        _PACKAGE_DATA.substitute(module=module, globs=", ".join(f'"{g}"' for g in globs))
        if globs
        else ""
    )
    values["layout"] = Template(_LAYOUT_IMPL if impl else _LAYOUT_DATA_ONLY).substitute(values)
    values["notes"] = Template(_NOTES.get(kind, "")).substitute(values)
    files = {
        "pyproject.toml": _PYPROJECT.substitute(values),
        "README.md": _README.substitute(values),
        f"src/{module}/__init__.py": f'"""{values["summary"]}."""\n',
        f"src/{module}/plugin.py": _PLUGIN.substitute(values),
        f"tests/test_{module.removeprefix('martlet_')}.py": _TEST.substitute(values),
    }
    if impl:
        files[f"src/{module}/impl.py"] = Template(impl).substitute(values)
    for rel, text in data.items():
        files[f"src/{module}/{rel}"] = text
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _contract_name(kind: str) -> str:
    from martlet_sdk.contracts import contract_for

    return contract_for(kind).__name__
