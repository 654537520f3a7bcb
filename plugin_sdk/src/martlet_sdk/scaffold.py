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

`src/$module/plugin.py` yields the record; `src/$module/impl.py` holds the implementation,
imported only when the $label is used. The test in `tests/` runs the Martlet contract for
$kind against the installed plugin.
""")

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
    "callbacks": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        '        summary="Print metrics as JSON lines (a callback from $dist).",\n',
        '''\
"""The $record_name callback: prints each log as a JSON line on stderr."""

import json
import sys


class $cls:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr

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
        '        summary="Token cross-entropy (a loss from $dist).",\n',
        '''\
"""The $record_name loss: mean cross-entropy over tokens whose label is not -100."""


def $func(model, batch, **options):
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100
    )
''',
        (),
    ),
    "tuners": (
        '        name="$record_name",\n'
        '        impl="$module.impl:$cls",\n'
        '        requires=("torch", "safetensors"),\n'
        '        capabilities={"train", "merge"},\n'
        '        summary="Train only the normalisation weights (a tuner from $dist).",\n',
        '''\
"""The $record_name tuner: only the weights of normalisation layers train.

Replace the parameter selection in prepare() with your method; keep save/load/restore/merge.
"""

from pathlib import Path

FILE = "norm_weights.safetensors"


class $cls:
    def prepare(self, model, config):
        model.requires_grad_(False)
        for name, param in model.named_parameters():
            if "norm" in name:
                param.requires_grad_(True)
        return model

    def save(self, model, output_dir):
        from safetensors.torch import save_file

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        trained = {n: p.detach().contiguous() for n, p in model.named_parameters() if "norm" in n}
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
        '        hub_ids={"huggingface": "tatsu-lab/alpaca"},\n'
        '        format="alpaca",\n'
        '        summary="A dataset from $dist.",\n',
        "",
        (),
    ),
}

_EXTRA_FIXTURES = {
    "tuners": """
    @pytest.fixture
    def tuner_config(self):
        from types import SimpleNamespace

        return SimpleNamespace(learning_rate=1e-2)  # your tuner's options object
""",
}

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
        "wrap(self, model, optimizer)",
        "save_checkpoint(self, model, optimizer, path)",
    ),
    "quantizers": ("quantize_on_load(self, bits, **options)",),
    "inference_backends": (
        "__init__(self, model=None, tokenizer=None, **options)",
        "generate(self, requests, **generation)",
        "stream(self, messages, **generation)",
    ),
    "eval_tasks": ("examples(self, limit=None)", "score(self, predictions, examples)"),
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
    values["deps"] = ", ".join(
        f'"{d}"' for d in (f"martlet-core>={major}.{minor},<{major}.{minor + 1}", *deps)
    )
    values["fields"] = Template(fields).substitute(values)
    values["extra_fixtures"] = _EXTRA_FIXTURES.get(kind, "")
    files = {
        "pyproject.toml": _PYPROJECT.substitute(values),
        "README.md": _README.substitute(values),
        f"src/{module}/__init__.py": f'"""{values["summary"]}."""\n',
        f"src/{module}/plugin.py": _PLUGIN.substitute(values),
        f"tests/test_{module.removeprefix('martlet_')}.py": _TEST.substitute(values),
    }
    if impl:
        files[f"src/{module}/impl.py"] = Template(impl).substitute(values)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _contract_name(kind: str) -> str:
    from martlet_sdk.contracts import contract_for

    return contract_for(kind).__name__
