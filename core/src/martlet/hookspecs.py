"""Every hook Martlet calls. Plugins implement them with :data:`martlet.hookimpl`.

There are two sorts:

* **Registration hooks** (``martlet_<kind>``) take no arguments and return an iterable of records
  of one kind (see :mod:`martlet.records`). They are called once per process, when the registry
  is first needed, on every loaded plugin; a hook that raises, returns something that is not an
  iterable of that kind's record, or yields a record that does not validate marks its plugin
  ``failed`` and none of that plugin's records are used. Records only *name* implementations by
  import strings, so these hooks must not import heavy libraries.
* **Lifecycle hooks** let a plugin observe or adjust a job without owning it. They are called on
  every plugin that implements them. Pluggy calls the most recently registered plugin first;
  do not rely on that order between third-party plugins, choose behaviour by name instead.

This file is the reference: ``docs/plugins.md`` quotes every signature and docstring from here
(a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from martlet import records as r

PROJECT = "martlet"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def martlet_models() -> Iterable[r.ModelRecord]:
    """Register model ids users can name.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.ModelRecord`.

    Example::

        @hookimpl
        def martlet_models():
            yield ModelRecord(
                name="qwen2.5-0.5b-instruct",
                family="qwen2.5",
                hub_ids={"huggingface": "Qwen/Qwen2.5-0.5B-Instruct",
                         "modelscope": "Qwen/Qwen2.5-0.5B-Instruct"},
                template="qwen2.5",
                size="0.5B",
                summary="Qwen2.5 0.5B instruct",
            )
    """


@hookspec
def martlet_model_loaders() -> Iterable[r.ModelLoaderRecord]:
    """Register ways a model source (a folder, a hub id, a GGUF file) becomes model and tokenizer.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.ModelLoaderRecord`.

    Example::

        @hookimpl
        def martlet_model_loaders():
            yield ModelLoaderRecord(
                name="gguf",
                impl="my_plugin.loaders:GgufLoader",
                sources=("gguf",),
                requires=("gguf>=0.10",),
                summary="GGUF files, dequantized through transformers",
            )
    """


@hookspec
def martlet_templates() -> Iterable[r.TemplateRecord]:
    """Register chat templates.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.TemplateRecord`.

    Example::

        @hookimpl
        def martlet_templates():
            yield TemplateRecord(
                name="chatml",
                impl="my_plugin.templates:ChatMLTemplate",
                families=("qwen2", "yi"),
                summary="<|im_start|>role ... <|im_end|> turns",
            )
    """


@hookspec
def martlet_datasets() -> Iterable[r.DatasetRecord]:
    """Register named datasets.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.DatasetRecord`.

    Example::

        @hookimpl
        def martlet_datasets():
            yield DatasetRecord(
                name="alpaca-gpt4-en",
                hub_ids={"huggingface": "vicgalle/alpaca-gpt4"},
                format="alpaca",
                summary="52k GPT-4 answers to the Alpaca instructions",
            )
    """


@hookspec
def martlet_dataset_sources() -> Iterable[r.DatasetSourceRecord]:
    """Register readers of rows: local files, hub ids, streams.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.DatasetSourceRecord`.

    Example::

        @hookimpl
        def martlet_dataset_sources():
            yield DatasetSourceRecord(
                name="jsonl",
                impl="my_plugin.sources:JsonlSource",
                suffixes=(".jsonl",),
                summary="JSON Lines files, read lazily",
            )
    """


@hookspec
def martlet_tuners() -> Iterable[r.TunerRecord]:
    """Register training methods for the weights (PEFT, full, freeze, ...).

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.TunerRecord`.

    Example::

        @hookimpl
        def martlet_tuners():
            yield TunerRecord(
                name="lora",
                impl="my_plugin.lora:LoraTuner",
                aliases=("LoRA",),
                requires=("peft>=0.13",),
                capabilities={"train", "merge"},
                summary="low-rank adapters on linear layers",
            )
    """


@hookspec
def martlet_losses() -> Iterable[r.LossRecord]:
    """Register training objectives.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.LossRecord`.

    Example::

        @hookimpl
        def martlet_losses():
            yield LossRecord(
                name="dpo",
                impl="my_plugin.dpo:dpo_loss",
                data="preference",
                reference=True,
                summary="direct preference optimisation",
            )
    """


@hookspec
def martlet_parallel_strategies() -> Iterable[r.ParallelRecord]:
    """Register parallel strategies.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.ParallelRecord`.

    Example::

        @hookimpl
        def martlet_parallel_strategies():
            yield ParallelRecord(
                name="ddp",
                impl="my_plugin.ddp:DDPStrategy",
                multi_process=True,
                capabilities={"cpu", "cuda"},
                summary="data parallel, one process per device",
            )
    """


@hookspec
def martlet_quantizers() -> Iterable[r.QuantizerRecord]:
    """Register quantization methods.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.QuantizerRecord`.

    Example::

        @hookimpl
        def martlet_quantizers():
            yield QuantizerRecord(
                name="bnb",
                impl="my_plugin.bnb:BnbQuantizer",
                bits=(4, 8),
                stages=("load",),
                requires=("bitsandbytes>=0.45",),
                summary="bitsandbytes 4/8-bit at load time (QLoRA)",
            )
    """


@hookspec
def martlet_inference_backends() -> Iterable[r.BackendRecord]:
    """Register inference engines.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.BackendRecord`.

    Example::

        @hookimpl
        def martlet_inference_backends():
            yield BackendRecord(
                name="pt",
                impl="my_plugin.engine:PtEngine",
                capabilities={"stream", "batch", "cpu", "cuda"},
                summary="transformers generate() with a KV cache",
            )
    """


@hookspec
def martlet_accelerators() -> Iterable[r.AcceleratorRecord]:
    """Register device kinds.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.AcceleratorRecord`.

    Example::

        @hookimpl
        def martlet_accelerators():
            yield AcceleratorRecord(
                name="npu",
                impl="my_plugin.npu:NpuAccelerator",
                device_type="npu",
                requires=("torch_npu",),
                summary="Ascend NPUs through torch_npu",
            )
    """


@hookspec
def martlet_eval_tasks() -> Iterable[r.EvalTaskRecord]:
    """Register benchmarks and their scoring.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.EvalTaskRecord`.

    Example::

        @hookimpl
        def martlet_eval_tasks():
            yield EvalTaskRecord(
                name="gsm8k",
                impl="my_plugin.tasks:Gsm8k",
                dataset="gsm8k",
                metric="exact_match",
                summary="grade-school maths, final-answer accuracy",
            )
    """


@hookspec
def martlet_callbacks() -> Iterable[r.CallbackRecord]:
    """Register loggers and training-loop observers.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.CallbackRecord`.

    Example::

        @hookimpl
        def martlet_callbacks():
            yield CallbackRecord(
                name="tensorboard",
                impl="my_plugin.tb:TensorBoardCallback",
                requires=("tensorboard",),
                summary="write scalars for TensorBoard",
            )
    """


@hookspec
def martlet_kernels() -> Iterable[r.KernelRecord]:
    """Register kernels: layers a training run switches into the model (``--kernels``).

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.KernelRecord`.

    Example::

        @hookimpl
        def martlet_kernels():
            yield KernelRecord(
                name="fast-norm",
                impl="my_plugin.norm:FastNorm",
                devices=("cpu",),
                dtypes=("bfloat16",),
                replaces="Llama-style RMSNorm",
                summary="RMSNorm in one compiled pass",
            )
    """


@hookspec
def martlet_rewards() -> Iterable[r.RewardRecord]:
    """Register reward functions of online RL: scores of generated completions
    (``--reward-funcs``).

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.RewardRecord`.

    Example::

        @hookimpl
        def martlet_rewards():
            yield RewardRecord(
                name="exact",
                impl="my_plugin.rewards:ExactAnswer",
                options="my_plugin.options:ExactOptions",
                columns=("solution",),
                summary="1.0 when the answer is the solution, word for word",
            )
    """


@hookspec
def martlet_commands() -> Iterable[r.CommandRecord]:
    """Register CLI subcommands.

    Arguments: none.

    Called: once per process, the first time the registry is used (listing, ``--help``,
    resolving a name).

    Returns: an iterable (a list, or a generator) of :class:`~martlet.records.CommandRecord`.

    Example::

        @hookimpl
        def martlet_commands():
            yield CommandRecord(
                name="hello",
                impl="my_plugin.cli:hello",   # a click.Command, imported only when run
                summary="Say hello.",
            )
    """


@hookspec
def martlet_configure(config: Any) -> None:
    """Observe or adjust a job's resolved config before the job starts.

    Arguments:
        config: the command's config dataclass, after defaults, the config file and the flags
            have been applied. Mutate it in place to adjust a value; raise
            :class:`~martlet.errors.ConfigError` to refuse it.

    Called: once per command run, after the config is resolved and before any model or data is
    loaded, on every plugin that implements it.

    Returns: nothing (the return value is ignored).

    Example::

        @hookimpl
        def martlet_configure(config):
            if getattr(config, "torch_dtype", None) == "float16" and not has_fp16():
                config.torch_dtype = "float32"
    """


@hookspec
def martlet_model_loaded(model: Any, config: Any) -> None:
    """Observe a model right after it has been loaded and before it is tuned or served.

    Arguments:
        model: the loaded model (a ``torch.nn.Module``).
        config: the job's resolved config.

    Called: once per model load in a command (the policy, and again for a reference or teacher
    model), on every plugin that implements it.

    Returns: nothing (the return value is ignored).

    Example::

        @hookimpl
        def martlet_model_loaded(model, config):
            n = sum(p.numel() for p in model.parameters())
            print(f"loaded {n / 1e6:.1f}M parameters")
    """
