"""The contract of ``losses`` records: the implementation is called the way the record's
``inputs`` (and ``data``, ``reference``) say, and answers with finite losses and gradients.

- ``"batch"`` (SFT, pre-training): the implementation is callable (the training loop's own
  tests exercise it on a model).
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
runner does. Everything runs on the CPU in float32.
"""

from __future__ import annotations

import inspect
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


class LossContract(RecordContract):
    """A loss: registration checks, and calls shaped by the record's ``inputs``.

    No fixture is needed besides ``plugin`` and ``record_name``.
    """

    kind = "losses"
    interface = {"__call__": None}

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
