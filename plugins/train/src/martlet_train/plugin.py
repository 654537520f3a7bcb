"""Registers the training objectives and loggers of martlet-train (no torch import here)."""

from martlet import hookimpl
from martlet.records import CallbackRecord, CommandRecord, LossRecord

MARTLET_API = 1


@hookimpl
def martlet_losses():
    yield LossRecord(
        name="sft",
        impl="martlet_train.losses:causal_lm_loss",
        data="messages",
        summary="Cross-entropy on assistant tokens (supervised fine-tuning).",
        aliases=("causal-lm",),
    )
    yield LossRecord(
        name="pt",
        impl="martlet_train.losses:causal_lm_loss",
        data="text",
        summary="Cross-entropy on every token (continued pre-training).",
        aliases=("pretrain",),
    )


@hookimpl
def martlet_callbacks():
    yield CallbackRecord(
        name="tensorboard",
        impl="martlet_train.callbacks:TensorBoardCallback",
        options="martlet_train.callbacks:TensorBoardOptions",
        requires=("tensorboard",),
        summary="Write metrics as TensorBoard scalars under OUTPUT_DIR/runs.",
    )


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="sft",
        impl="martlet_train.cli:sft",
        summary="Fine-tune a model on chat data (LoRA and other tuners, or full).",
    )
    yield CommandRecord(
        name="pt",
        impl="martlet_train.cli:pt",
        summary="Continue pre-training a model on raw text.",
    )
    yield CommandRecord(
        name="rlhf",
        impl="martlet_train.cli:rlhf",
        summary="Preference alignment (DPO, KTO, SimPO, CPO, ORPO), reward models, distillation.",
    )
