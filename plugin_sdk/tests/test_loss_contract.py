"""LossContract catches losses that break the calling convention of their ``inputs``."""

from __future__ import annotations

import sys
import types

import pytest
from martlet import hookimpl
from martlet.records import LossRecord
from martlet_sdk.contracts import LossContract

# the implementations the records below name, importable by their import strings
IMPLS = types.ModuleType("_martlet_sdk_loss_contract_impls")
sys.modules[IMPLS.__name__] = IMPLS


def _scalar_dpo(pc, pr, rc, rr):
    """Reduces over the batch: not one loss per pair."""
    import torch.nn.functional as F

    d = (pc - rc) - (pr - rr)
    return types.SimpleNamespace(
        losses=-F.logsigmoid(d).mean(), chosen_rewards=(pc - rc).detach(),
        rejected_rewards=(pr - rr).detach(),
    )  # fmt: skip


def _ratio_dpo(pc, pr, rc, rr, *, chosen_lengths=None, rejected_lengths=None):
    """Divides by the log-ratio: infinite when the policy is the reference."""
    c, r = pc - rc, pr - rr
    return types.SimpleNamespace(
        losses=1 / c + 1 / r, chosen_rewards=c.detach(), rejected_rewards=r.detach()
    )


def _biased_gkd(student, teacher, labels=None):
    """Not a divergence: positive between identical distributions."""
    return (student.log_softmax(-1) - teacher.log_softmax(-1)).pow(2).sum() + 1.0


def _mean_ce(model, batch, **options):
    """What `martlet plugin new --kind losses` generated: a mean, not (loss_sum, count, metrics)."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100
    )


def _mean_triple(model, batch):
    """The right shape, but the mean where the loop wants the sum."""
    loss = _mean_ce(model, batch)
    return loss, (batch["labels"][:, 1:] != -100).sum(), {}


def _detached_sum(model, batch):
    """A sum the gradient cannot flow from."""
    loss, count, metrics = _mean_triple(model, batch)
    return (loss * count).detach(), count, metrics


IMPLS.scalar_dpo, IMPLS.ratio_dpo, IMPLS.biased_gkd = _scalar_dpo, _ratio_dpo, _biased_gkd
IMPLS.mean_ce, IMPLS.mean_triple, IMPLS.detached_sum = _mean_ce, _mean_triple, _detached_sum


class Broken:
    @hookimpl
    def martlet_losses(self):
        common = dict(data="preference", reference=True, inputs="logps", summary="Broken.")
        yield LossRecord(name="scalar-dpo", impl=f"{IMPLS.__name__}:scalar_dpo", **common)
        yield LossRecord(name="ratio-dpo", impl=f"{IMPLS.__name__}:ratio_dpo", **common)
        yield LossRecord(
            name="biased-gkd", impl=f"{IMPLS.__name__}:biased_gkd", inputs="logits",
            summary="Broken.",
        )  # fmt: skip
        for name in ("mean-ce", "mean-triple", "detached-sum"):
            impl = f"{IMPLS.__name__}:{name.replace('-', '_')}"
            yield LossRecord(name=name, impl=impl, inputs="batch", summary="Broken.")


def _fails(test):
    return pytest.mark.xfail(raises=AssertionError, strict=True)(test)


class TestScalarLoss(LossContract):
    @pytest.fixture
    def plugin(self):
        return Broken()

    @pytest.fixture
    def record_name(self):
        return "scalar-dpo"

    @_fails
    def test_preference_loss_answers_per_pair(self, record, impl, pairs):
        super().test_preference_loss_answers_per_pair(record, impl, pairs)


class TestInfiniteLoss(LossContract):
    @pytest.fixture
    def plugin(self):
        return Broken()

    @pytest.fixture
    def record_name(self):
        return "ratio-dpo"

    @_fails
    def test_policy_equal_to_reference_gives_finite_losses(self, record, impl, pairs):
        super().test_policy_equal_to_reference_gives_finite_losses(record, impl, pairs)


class TestBiasedDistillation(LossContract):
    @pytest.fixture
    def plugin(self):
        return Broken()

    @pytest.fixture
    def record_name(self):
        return "biased-gkd"

    @_fails
    def test_distillation_loss_is_zero_when_student_is_teacher(self, record, impl, logits):
        super().test_distillation_loss_is_zero_when_student_is_teacher(record, impl, logits)


class TestMeanLoss(LossContract):
    """The loss `martlet plugin new --kind losses` used to generate."""

    @pytest.fixture
    def plugin(self):
        return Broken()

    @pytest.fixture
    def record_name(self):
        return "mean-ce"

    @_fails
    @pytest.mark.parametrize("layout", ["padded", "padding-free"])
    def test_batch_loss_returns_a_finite_differentiable_sum(
        self, record, impl, batch_tokenizer, batch_model, layout
    ):
        super().test_batch_loss_returns_a_finite_differentiable_sum(
            record, impl, batch_tokenizer, batch_model, layout
        )

    @_fails
    def test_batch_loss_is_a_sum_not_a_mean(self, record, impl, batch_tokenizer, batch_model):
        super().test_batch_loss_is_a_sum_not_a_mean(record, impl, batch_tokenizer, batch_model)


class TestMeanTriple(LossContract):
    @pytest.fixture
    def plugin(self):
        return Broken()

    @pytest.fixture
    def record_name(self):
        return "mean-triple"

    @_fails
    def test_batch_loss_is_a_sum_not_a_mean(self, record, impl, batch_tokenizer, batch_model):
        super().test_batch_loss_is_a_sum_not_a_mean(record, impl, batch_tokenizer, batch_model)


class TestDetachedSum(LossContract):
    @pytest.fixture
    def plugin(self):
        return Broken()

    @pytest.fixture
    def record_name(self):
        return "detached-sum"

    @_fails
    @pytest.mark.parametrize("layout", ["padded", "padding-free"])
    def test_batch_loss_returns_a_finite_differentiable_sum(
        self, record, impl, batch_tokenizer, batch_model, layout
    ):
        super().test_batch_loss_returns_a_finite_differentiable_sum(
            record, impl, batch_tokenizer, batch_model, layout
        )
