"""The contract of ``losses`` records: the implementation is called the way the record's
``inputs`` (and ``data``, ``reference``) say, and answers with finite losses and gradients.

- ``"batch"`` (SFT, pre-training): ``impl(model, batch) -> (loss_sum, count, metrics)``, the
  way the training loop calls it, on the tiny model and batches as the collators make them
  (padded: ``input_ids``, ``attention_mask``, ``labels``, ``num_tokens``; padding-free:
  ``position_ids`` and no ``attention_mask``), chat rows with the prompt masked for
  ``data="messages"``, every token labelled for ``data="text"``. ``loss_sum`` is a finite
  scalar tensor that gradients flow from, *summed* over the batch's units (a batch of the rows
  twice gives twice the sum); ``count`` is those units (the target tokens, or the
  implementation's ``count(batch)``); ``metrics`` maps names to ``(sum, n)`` pairs. A loss
  with ``prepare(model, batch) -> batch`` gets each batch through it first, as in the loop.
- ``"logps"`` on ``"preference"`` rows: ``impl(policy_chosen, policy_rejected[,
  reference_chosen, reference_rejected], chosen_lengths=, rejected_lengths=)`` with summed
  log-probs of 4 pairs -> an output whose ``losses``, ``chosen_rewards`` and
  ``rejected_rewards`` have shape ``[4]``.
- ``"logps"`` on ``"kto"`` rows: ``impl(policy, reference, labels, policy_kl, reference_kl)``
  -> an output with per-row ``losses``.
- ``"rewards"``: ``impl(chosen_scores, rejected_scores)`` -> per-pair ``losses`` and rewards.
- ``"logits"``: ``impl(student_logits, teacher_logits, labels)`` -> a finite scalar, zero when
  the student equals the teacher.

Length keywords are passed only where the implementation's signature accepts them, as the
runner does. Everything runs on the CPU in float32; the ``batch`` checks need the tiny model
(``martlet-plugin-sdk[models]``) and skip with the reason without it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import pytest
from martlet.records import Record

from martlet_sdk.contracts.base import RecordContract

PAIRS = 4


def _skip_unless(record: Record, inputs: str, data: str | None = None) -> None:
    if record.inputs != inputs:
        pytest.skip(f"loss {record.name!r} takes {record.inputs!r}, not {inputs!r}")
    if data is not None and record.data != data:
        pytest.skip(f"loss {record.name!r} trains on {record.data!r} rows, not {data!r}")


def _accepts(impl: Any, name: str) -> bool:
    try:
        params = inspect.signature(impl).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _summed_logps(generator: Any, lengths: Any) -> Any:
    """Random summed log-probs: a per-token average in [-3, -0.1) times the length."""
    import torch

    average = -(torch.rand(lengths.shape, generator=generator) * 2.9 + 0.1)
    return average * lengths


def _finite(tensor: Any) -> bool:
    import torch

    return bool(torch.isfinite(tensor).all())


def _check_rewards(out: Any, n: int) -> None:
    for name in ("chosen_rewards", "rejected_rewards"):
        value = getattr(out, name, None)
        assert value is not None, f"the output has no {name}"
        assert tuple(value.shape) == (n,), f"{name} has shape {tuple(value.shape)}, want ({n},)"
        assert _finite(value), f"{name} is not finite: {value}"
        assert not value.requires_grad, f"{name} must be detached (they are for logging)"


IGNORE = -100

#: chat rows for ``data="messages"`` batch losses (texts for ``data="text"`` ones)
CONVERSATIONS = (
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ],
    [
        {"role": "system", "content": "Answer with numbers."},
        {"role": "user", "content": "Two plus two?"},
        {"role": "assistant", "content": "4, and four plus four is 8."},
    ],
)
TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. The capital of France is Paris.",
)


def encoded_rows(tokenizer: Any, data: str) -> list[dict[str, list[int]]]:
    """Rows as the encoder gives them: ``input_ids`` and ``labels`` (-100 where nothing is
    learned: the prompt of a chat row)."""
    rows = []
    if data == "text":
        for text in TEXTS:
            ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
            rows.append({"input_ids": ids, "labels": list(ids)})
        return rows
    for messages in CONVERSATIONS:
        prompt = _ids(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True))
        ids = _ids(tokenizer.apply_chat_template(messages))
        assert ids[: len(prompt)] == prompt, "the tiny chat template renders a prompt prefix"
        rows.append({"input_ids": ids, "labels": [IGNORE] * len(prompt) + ids[len(prompt) :]})
    return rows


def _ids(encoded: Any) -> list[int]:
    return list(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)


def collate(rows: list[dict[str, list[int]]], pad: int, layout: str = "padded") -> dict[str, Any]:
    """A batch as martlet-data's collators make it: ``padded`` (right padding, -100 labels on
    padding) or ``padding-free`` (the rows as one row with restarting ``position_ids``)."""
    import torch

    if layout == "padding-free":
        ids, labels, positions = [], [], []
        for row in rows:
            ids += row["input_ids"]
            labels += [IGNORE] + row["labels"][1:]
            positions += range(len(row["input_ids"]))
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
            "num_tokens": torch.tensor(len(ids)),
        }
    length = max(len(r["input_ids"]) for r in rows)
    return {
        "input_ids": torch.tensor(
            [r["input_ids"] + [pad] * (length - len(r["input_ids"])) for r in rows]
        ),
        "attention_mask": torch.tensor(
            [[1] * len(r["input_ids"]) + [0] * (length - len(r["input_ids"])) for r in rows]
        ),
        "labels": torch.tensor(
            [r["labels"] + [IGNORE] * (length - len(r["labels"])) for r in rows]
        ),
        "num_tokens": torch.tensor(sum(len(r["input_ids"]) for r in rows)),
    }


def _number(value: Any) -> float:
    return float(value.detach()) if hasattr(value, "detach") else float(value)


class LossContract(RecordContract):
    """A loss: registration checks, and calls shaped by the record's ``inputs``.

    No fixture is needed besides ``plugin`` and ``record_name``.
    """

    kind = "losses"
    interface = {"__call__": None}

    def test_the_loss_takes_each_option_its_record_declares(self, record: Record, impl: Any):
        """``sft --loss`` and ``rlhf --method`` pass the loss exactly its record's options, as
        keyword arguments."""
        import dataclasses

        options = record.options_class()
        if options is None:
            pytest.skip(f"loss {record.name!r} declares no options")
        for field in dataclasses.fields(options):
            assert _accepts(impl, field.name), (
                f"option {field.name!r} of {record.options} is not a keyword of {record.impl}"
            )

    # --------------------------------------------------------------- batch (sft, pt)

    @pytest.fixture
    def batch_tokenizer(self, record: Record) -> Any:
        _skip_unless(record, "batch")
        pytest.importorskip(
            "transformers", reason="the batch checks need martlet-plugin-sdk[models]"
        )
        from martlet_sdk.tiny import tiny_tokenizer

        return tiny_tokenizer()

    @pytest.fixture
    def batch_model(self, batch_tokenizer: Any) -> Any:
        from martlet_sdk.tiny import tiny_model

        return tiny_model(tokenizer=batch_tokenizer).train()  # the loop calls it in train mode

    def _call_batch(self, impl: Any, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        prepare = getattr(impl, "prepare", None)
        if prepare is not None:
            batch = prepare(model, batch)
        out = impl(model, batch)
        assert isinstance(out, tuple) and len(out) == 3, (
            "a batch loss returns (loss_sum, count, metrics), as martlet_train.losses."
            f"causal_lm_loss does; got {type(out).__name__}"
            + (f" of shape {tuple(out.shape)}" if hasattr(out, "shape") else "")
        )
        loss_sum, count, metrics = out
        import torch

        assert isinstance(loss_sum, torch.Tensor) and loss_sum.dim() == 0, (
            f"loss_sum must be a scalar tensor, got {type(loss_sum).__name__}"
            + (f" of shape {tuple(loss_sum.shape)}" if hasattr(loss_sum, "shape") else "")
        )
        assert _finite(loss_sum), f"loss_sum is not finite: {loss_sum}"
        units = getattr(impl, "count", None)
        want = (
            int(units(batch))
            if units is not None
            else int((batch["labels"][:, 1:] != IGNORE).sum())
        )
        assert int(_number(count)) == want, (
            f"count is {count}, want {want}: "
            + ("the implementation's count(batch)" if units is not None else "the target tokens")
            + " (labels[:, 1:] != -100), what the loop divides the step's loss_sum by"
        )
        assert isinstance(metrics, Mapping), f"metrics must be a dict, got {type(metrics).__name__}"
        for name, pair in metrics.items():
            assert isinstance(name, str), f"metric names are strings, got {name!r}"
            assert isinstance(pair, tuple) and len(pair) == 2, (
                f"metric {name!r} must be a (sum, n) pair (logged as sum / n), got {pair!r}"
            )
            value, n = (_number(v) for v in pair)
            assert math.isfinite(value) and math.isfinite(n), f"metric {name!r} is {pair!r}"
        return loss_sum, count, metrics

    @pytest.mark.parametrize("layout", ["padded", "padding-free"])
    def test_batch_loss_returns_a_finite_differentiable_sum(
        self, record: Record, impl: Any, batch_tokenizer: Any, batch_model: Any, layout: str
    ) -> None:
        model, tokenizer = batch_model, batch_tokenizer
        batch = collate(encoded_rows(tokenizer, record.data), tokenizer.pad_token_id, layout)
        loss_sum, _count, _metrics = self._call_batch(impl, model, batch)
        assert loss_sum.requires_grad, "loss_sum carries no gradient (is it detached?)"
        loss_sum.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads, "no gradient reaches the model's parameters"
        assert all(_finite(g) for g in grads), "the gradients are not finite"
        assert any(bool(g.abs().sum() > 0) for g in grads), "every gradient is zero"

    def test_batch_loss_is_a_sum_not_a_mean(
        self, record: Record, impl: Any, batch_tokenizer: Any, batch_model: Any
    ) -> None:
        import torch

        model, pad = batch_model, batch_tokenizer.pad_token_id
        rows = encoded_rows(batch_tokenizer, record.data)
        with torch.no_grad():
            once, count_once, _ = self._call_batch(impl, model, collate(rows, pad))
            twice, count_twice, _ = self._call_batch(impl, model, collate(rows + rows, pad))
        assert int(_number(count_twice)) == 2 * int(_number(count_once)), (
            f"count {count_twice} for the rows twice, {count_once} for them once"
        )
        assert float(twice) == pytest.approx(2 * float(once), rel=1e-4), (
            f"loss_sum {float(twice):.6g} for the rows twice, {float(once):.6g} once: return the "
            "sum over the batch's units, not a mean (the loop divides by the step's units)"
        )

    # --------------------------------------------------------------- logps, preference rows

    @pytest.fixture
    def pairs(self) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(0)
        chosen_lengths = torch.randint(2, 12, (PAIRS,), generator=generator)
        rejected_lengths = torch.randint(2, 12, (PAIRS,), generator=generator)
        return {
            "policy_chosen": _summed_logps(generator, chosen_lengths),
            "policy_rejected": _summed_logps(generator, rejected_lengths),
            "reference_chosen": _summed_logps(generator, chosen_lengths),
            "reference_rejected": _summed_logps(generator, rejected_lengths),
            "chosen_lengths": chosen_lengths,
            "rejected_lengths": rejected_lengths,
        }

    def _call_pairs(self, record: Record, impl: Any, pairs: dict[str, Any], **over: Any) -> Any:
        values = {**pairs, **over}
        args = [values["policy_chosen"], values["policy_rejected"]]
        if record.reference:
            args += [values["reference_chosen"], values["reference_rejected"]]
        kwargs = {k: values[k] for k in ("chosen_lengths", "rejected_lengths") if _accepts(impl, k)}
        return impl(*args, **kwargs)

    def test_preference_loss_answers_per_pair(self, record: Record, impl: Any, pairs) -> None:
        _skip_unless(record, "logps", "preference")
        out = self._call_pairs(record, impl, pairs)
        assert tuple(out.losses.shape) == (PAIRS,), (
            f"losses has shape {tuple(out.losses.shape)}, want one per pair ({PAIRS},)"
        )
        assert _finite(out.losses), f"losses are not finite: {out.losses}"
        _check_rewards(out, PAIRS)

    def test_policy_equal_to_reference_gives_finite_losses(
        self, record: Record, impl: Any, pairs
    ) -> None:
        _skip_unless(record, "logps", "preference")
        if not record.reference:
            pytest.skip(f"loss {record.name!r} uses no reference model")
        out = self._call_pairs(
            record,
            impl,
            pairs,
            reference_chosen=pairs["policy_chosen"].clone(),
            reference_rejected=pairs["policy_rejected"].clone(),
        )
        assert _finite(out.losses), f"losses are not finite at policy == reference: {out.losses}"

    def test_preference_gradient_reaches_the_policy(self, record: Record, impl: Any, pairs):
        _skip_unless(record, "logps", "preference")
        chosen = pairs["policy_chosen"].clone().requires_grad_(True)
        rejected = pairs["policy_rejected"].clone().requires_grad_(True)
        out = self._call_pairs(record, impl, pairs, policy_chosen=chosen, policy_rejected=rejected)
        out.losses.sum().backward()
        assert chosen.grad is not None, "no gradient reaches policy_chosen_logps"
        assert _finite(chosen.grad) and _finite(rejected.grad), (
            f"gradients are not finite: {chosen.grad}, {rejected.grad}"
        )

    # --------------------------------------------------------------- logps, KTO rows

    @pytest.fixture
    def kto_rows(self) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(0)
        lengths = torch.randint(2, 12, (6,), generator=generator)
        return {
            "policy": _summed_logps(generator, lengths),
            "reference": _summed_logps(generator, lengths),
            "labels": torch.tensor([True, True, False, True, False, False]),
            "policy_kl": _summed_logps(generator, lengths),
            "reference_kl": _summed_logps(generator, lengths),
        }

    def test_kto_loss_answers_per_row(self, record: Record, impl: Any, kto_rows) -> None:
        _skip_unless(record, "logps", "kto")
        rows = kto_rows
        policy = rows["policy"].clone().requires_grad_(True)
        out = impl(
            policy, rows["reference"], rows["labels"], rows["policy_kl"], rows["reference_kl"]
        )
        n = len(policy)
        assert tuple(out.losses.shape) == (n,), (
            f"losses has shape {tuple(out.losses.shape)}, want one per row ({n},)"
        )
        assert _finite(out.losses), f"losses are not finite: {out.losses}"
        out.losses.sum().backward()
        assert policy.grad is not None and _finite(policy.grad), f"gradient: {policy.grad}"
        same = impl(
            rows["policy"],
            rows["policy"].clone(),
            rows["labels"],
            rows["policy_kl"],
            rows["policy_kl"].clone(),
        )
        assert _finite(same.losses), f"losses are not finite at policy == reference: {same}"

    # --------------------------------------------------------------- rewards

    def test_reward_loss_answers_per_pair(self, record: Record, impl: Any) -> None:
        import torch

        _skip_unless(record, "rewards")
        generator = torch.Generator().manual_seed(0)
        chosen = torch.randn(PAIRS, generator=generator).requires_grad_(True)
        rejected = torch.randn(PAIRS, generator=generator).requires_grad_(True)
        out = impl(chosen, rejected)
        assert tuple(out.losses.shape) == (PAIRS,), f"losses shape {tuple(out.losses.shape)}"
        assert _finite(out.losses), f"losses are not finite: {out.losses}"
        _check_rewards(out, PAIRS)
        out.losses.sum().backward()
        assert _finite(chosen.grad) and _finite(rejected.grad)

    # --------------------------------------------------------------- logits

    @pytest.fixture
    def logits(self) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 5, (2, 3), generator=generator)
        labels[0, 0] = -100
        return {
            "student": torch.randn(2, 3, 5, generator=generator),
            "teacher": torch.randn(2, 3, 5, generator=generator),
            "labels": labels,
        }

    def test_distillation_loss_is_a_finite_scalar(self, record: Record, impl: Any, logits):
        _skip_unless(record, "logits")
        student = logits["student"].clone().requires_grad_(True)
        loss = impl(student, logits["teacher"], logits["labels"])
        assert loss.dim() == 0, f"want a scalar, got shape {tuple(loss.shape)}"
        assert _finite(loss), f"loss is not finite: {loss}"
        loss.backward()
        assert student.grad is not None and _finite(student.grad), f"gradient: {student.grad}"

    def test_distillation_loss_is_zero_when_student_is_teacher(
        self, record: Record, impl: Any, logits
    ) -> None:
        _skip_unless(record, "logits")
        loss = impl(logits["teacher"].clone(), logits["teacher"], logits["labels"])
        assert abs(float(loss)) < 1e-5, f"loss {float(loss)} between identical distributions"
