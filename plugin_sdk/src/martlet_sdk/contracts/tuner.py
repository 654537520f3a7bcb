"""The contract of ``tuners`` records: a tuner trains, changes only what it claims, saves and
reloads to identical outputs, and merges to identical logits where it claims ``merge``.

Everything runs on the SDK's tiny model (~300k parameters) on the CPU, in float32.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from martlet.records import Record

from martlet_sdk.contracts.base import RecordContract, requires_capability


def _batch(tokenizer: Any) -> dict[str, Any]:

    texts = [
        "The capital of France is Paris. The capital of Spain is Madrid.",
        "Two plus two is four, and four plus four is eight.",
    ]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": labels,
    }


def _loss(model: Any, batch: dict[str, Any]) -> Any:
    import torch.nn.functional as F

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out.logits[:, -batch["labels"].shape[1] :][:, :-1].float()  # prompt tuning prepends
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100
    )


def _logits(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def train_steps(
    tuner: Any, model: Any, config: Any, batch: dict[str, Any], steps: int
) -> list[float]:
    """Train ``steps`` optimizer steps on one batch the way the training loop does; the losses."""
    import torch

    optimizer = None
    if hasattr(tuner, "create_optimizer"):
        optimizer = tuner.create_optimizer(model, config)
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=getattr(config, "learning_rate", 1e-2))
    losses = []
    model.train()
    for step in range(steps):
        loss = _loss(model, batch)
        if hasattr(tuner, "regularization"):
            extra = tuner.regularization(model)
            if extra is not None:
                loss = loss + extra
        loss.backward()
        optimizer.step()
        if hasattr(tuner, "on_step"):  # after the step, while gradients are still there
            tuner.on_step(model, step + 1)
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


class TunerContract(RecordContract):
    """Behavioural checks for a tuner on the tiny model.

    Optional fixtures: ``tuner_config`` — the options object the tuner's ``prepare(model,
    config)`` reads (by default the record's own options with their defaults, as ``martlet sft
    --tuner NAME`` composes them, and ``learning_rate`` 1e-2 for the check's optimizer);
    ``train_steps_count`` (default 8).

    Optional tuner methods the checks use as the training loop does: ``create_optimizer(model,
    config)`` (None for the default AdamW over trainable parameters), ``regularization(model)``
    (a loss term or None), ``on_step(model, step)`` after each optimizer step and before the
    gradients are cleared, and
    ``may_change(model)`` (names of the parameters training may change, when that is not just
    those with ``requires_grad`` after ``prepare``), and ``restore(model, path)`` (load what
    ``save`` wrote into a freshly *prepared* model, still trainable — how a run resumes).
    """

    kind = "tuners"
    interface = {"prepare": None, "save": None, "load": None, "merge": "merge"}

    @pytest.fixture
    def tuner_config(self, record: Record) -> Any:
        import dataclasses
        from types import SimpleNamespace

        options = record.options_class()
        values = dataclasses.asdict(options()) if options is not None else {}
        return SimpleNamespace(**{"learning_rate": 1e-2, **values})

    @pytest.fixture
    def train_steps_count(self) -> int:
        return 8

    @pytest.fixture
    def tuner(self, impl: Any) -> Any:
        return impl()

    @pytest.fixture
    def base_model(self, tiny_tokenizer: Any) -> Any:
        from martlet_sdk.tiny import tiny_model

        return tiny_model(seed=0, tokenizer=tiny_tokenizer)

    @pytest.fixture
    def batch(self, tiny_tokenizer: Any) -> dict[str, Any]:
        return _batch(tiny_tokenizer)

    @pytest.fixture
    def trained(self, tuner, base_model, tuner_config, batch, train_steps_count) -> dict[str, Any]:
        import torch

        torch.manual_seed(0)
        model = tuner.prepare(base_model, tuner_config)
        prepared = {n: p.detach().clone() for n, p in model.named_parameters()}
        if hasattr(tuner, "may_change"):
            claimed = set(tuner.may_change(model))
        else:
            claimed = {n for n, p in model.named_parameters() if p.requires_grad}
        losses = train_steps(tuner, model, tuner_config, batch, train_steps_count)
        return {"model": model, "prepared": prepared, "claimed": claimed, "losses": losses}

    def test_prepare_leaves_something_to_train(self, trained: dict[str, Any]) -> None:
        assert trained["claimed"], "prepare() left no parameter to train"

    def test_training_lowers_the_loss(self, trained: dict[str, Any]) -> None:
        import math

        losses = trained["losses"]
        assert all(math.isfinite(x) for x in losses), losses
        assert losses[-1] < losses[0], f"loss did not go down over {len(losses)} steps: {losses}"

    def test_only_claimed_parameters_change(self, trained: dict[str, Any]) -> None:
        import torch

        model, claimed = trained["model"], trained["claimed"]
        changed = {
            n for n, p in model.named_parameters() if not torch.equal(p, trained["prepared"][n])
        }
        assert changed, "training changed no parameter"
        stray = sorted(changed - claimed)
        assert not stray, f"parameters the tuner does not train changed: {stray[:5]}"

    def test_save_then_load_reproduces_the_outputs(
        self, trained, tuner, record, tiny_tokenizer, batch, tmp_path: Path
    ) -> None:
        import torch

        from martlet_sdk.tiny import tiny_model

        model = trained["model"]
        expected = _logits(model, batch)
        tuner.save(model, str(tmp_path / "out"))
        files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
        assert files, "save() wrote nothing"
        pickles = [p.name for p in files if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
        assert not pickles, f"weights must be safetensors, found {pickles}"
        from martlet.rundirs import check_folder

        written = {p.name for p in files}
        for name in record.saves:  # what the record says save() writes: checked before loads
            assert name in written or (
                name == "model.safetensors" and "model.safetensors.index.json" in written
            ), f"the record's saves names {name!r}, which save() did not write"
        check_folder(tmp_path / "out", record.name)
        fresh = tiny_model(seed=0, tokenizer=tiny_tokenizer)
        reloaded = tuner.load(fresh, str(tmp_path / "out"))
        torch.testing.assert_close(_logits(reloaded, batch), expected, atol=1e-6, rtol=1e-5)

    def test_restore_into_a_prepared_model_resumes_exactly(
        self, trained, tuner, impl, tiny_tokenizer, tuner_config, batch, tmp_path: Path
    ) -> None:
        import torch

        from martlet_sdk.tiny import tiny_model

        if getattr(tuner, "restore", None) is None:
            pytest.skip("the tuner has no restore(); runs using it cannot resume")
        model = trained["model"]
        expected = _logits(model, batch)
        tuner.save(model, str(tmp_path / "ckpt"))
        torch.manual_seed(0)
        again = impl()
        prepared = again.prepare(tiny_model(seed=0, tokenizer=tiny_tokenizer), tuner_config)
        restored = again.restore(prepared, str(tmp_path / "ckpt"))
        torch.testing.assert_close(_logits(restored, batch), expected, atol=1e-6, rtol=1e-5)
        trainable = {n for n, p in restored.named_parameters() if p.requires_grad}
        assert trainable, "a restored model must still be trainable"

    @requires_capability("merge")
    def test_merge_gives_the_same_logits(self, trained, tuner, batch, record: Record) -> None:
        import torch

        model = trained["model"]
        expected = _logits(model, batch)
        merged = tuner.merge(copy.deepcopy(model))
        assert type(merged).__module__.startswith("transformers"), (
            f"merge() should return a plain transformers model, got {type(merged)}"
        )
        torch.testing.assert_close(_logits(merged, batch), expected, atol=1e-4, rtol=1e-4)
