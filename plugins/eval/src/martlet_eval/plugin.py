"""Registers `martlet eval` and the built-in benchmarks (no torch import here)."""

from martlet import hookimpl
from martlet.records import CommandRecord, EvalTaskRecord

MARTLET_API = 1

T = "martlet_eval.tasks:"
CHOICE = "martlet_eval.options:ChoiceOptions"
GENERATE = "martlet_eval.options:GenerateOptions"


def _choice(name, impl, dataset, summary, metric="acc", aliases=()):
    return EvalTaskRecord(
        name=name,
        impl=T + impl,
        dataset=dataset,
        metric=metric,
        summary=summary,
        options=CHOICE,
        aliases=aliases,
    )


def _generate(name, impl, dataset, summary, aliases=()):
    return EvalTaskRecord(
        name=name,
        impl=T + impl,
        dataset=dataset,
        metric="exact_match",
        output_type="generate",
        summary=summary,
        options=GENERATE,
        aliases=aliases,
    )


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="eval",
        impl="martlet_eval.cli:eval_command",
        summary="Score a model, a run or an OpenAI-compatible endpoint on benchmarks.",
        aliases=("evaluate",),
    )


@hookimpl
def martlet_eval_tasks():
    yield _choice(
        "sample-mcq",
        "SampleMcq",
        "sample-mcq",
        "embedded multiple-choice sample: 320 general-knowledge questions, A-D",
        aliases=("sample_mcq",),
    )
    yield _generate(
        "sample-arith",
        "SampleArith",
        "sample-arith",
        "embedded arithmetic word problems (GSM8K style): the final number must match",
        aliases=("sample_arith",),
    )
    yield _choice(
        "mmlu", "Mmlu", "mmlu", "MMLU: 57 subjects of English questions, A-D (few-shot from dev)"
    )
    yield _choice(
        "ceval", "Ceval", "ceval", "C-Eval: Chinese exams in 52 subjects, A-D", aliases=("c-eval",)
    )
    yield _choice("cmmlu", "Cmmlu", "cmmlu", "CMMLU: 67 Chinese subjects, A-D")
    yield _choice(
        "arc-easy",
        "ArcEasy",
        "arc:ARC-Easy",
        "ARC Easy: science questions, the answer's text scored",
        metric="acc_norm",
        aliases=("arc_easy",),
    )
    yield _choice(
        "arc-challenge",
        "ArcEasy",
        "arc:ARC-Challenge",
        "ARC Challenge: harder science questions, the answer's text scored",
        metric="acc_norm",
        aliases=("arc_challenge", "arc"),
    )
    yield _choice(
        "hellaswag",
        "Hellaswag",
        "hellaswag",
        "HellaSwag: the most plausible ending of a scene",
        metric="acc_norm",
    )
    yield _choice(
        "truthfulqa-mc1",
        "TextChoice",
        "truthfulqa-mc",
        "TruthfulQA MC1: one true answer among false beliefs",
        aliases=("truthfulqa_mc1",),
    )
    yield _choice("boolq", "TextChoice", "boolq", "BoolQ: yes/no about a passage")
    yield _choice("winogrande", "TextChoice", "winogrande", "WinoGrande: fill the blank")
    yield _choice(
        "piqa", "TextChoice", "piqa", "PIQA: physical commonsense, two solutions", metric="acc_norm"
    )
    yield _generate(
        "gsm8k",
        "Gsm8k",
        "gsm8k:main",
        "GSM8K: grade-school maths, the final number must match",
    )
