"""The same numbers as TRL's own loss code (trl 1.16).

TRL's DPO and KTO losses live inside ``_compute_loss``, which runs the model; here a stand-in
model returns per-token log-probs that sum to the chosen values, and a stand-in trainer holds
the attributes the method reads. CPO, ORPO and GKD have standalone loss methods.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from martlet_align.distill import gkd
from martlet_align.kto import kto
from martlet_align.preference import cpo, dpo, orpo, simpo

trl = pytest.importorskip("trl")

PC = torch.tensor([-5.0, -9.0, -2.5, -12.0], dtype=torch.float64)
PR = torch.tensor([-7.0, -4.0, -2.0, -20.0], dtype=torch.float64)
RC = torch.tensor([-6.0, -8.0, -3.0, -11.0], dtype=torch.float64)
RR = torch.tensor([-6.5, -5.0, -2.2, -18.0], dtype=torch.float64)
CL = torch.tensor([4, 2, 1, 6])
RL = torch.tensor([5, 3, 2, 8])


class Accelerator:
    device = torch.device("cpu")

    def gather_for_metrics(self, value):
        return value

    gather = gather_for_metrics


def trainer(**attributes):
    return SimpleNamespace(
        model=SimpleNamespace(training=False),
        accelerator=Accelerator(),
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
        **attributes,
    )


def sequences(logps, lengths):
    """input_ids/completion_mask and the per-token log-probs a model would return for them:
    one prompt token, then ``length`` completion tokens whose log-probs sum to ``logps``."""
    width = int(lengths.max()) + 1
    mask = torch.zeros(len(logps), width, dtype=torch.long)
    per_token = torch.zeros(len(logps), width - 1, dtype=logps.dtype)
    for i, (value, n) in enumerate(zip(logps.tolist(), lengths.tolist(), strict=True)):
        mask[i, 1 : n + 1] = 1
        per_token[i, :n] = value / n
    return torch.zeros_like(mask), mask, per_token


class Model:
    """Returns the prepared per-token log-probs for whichever input_ids it is given."""

    def __init__(self, *pairs):
        self.pairs = pairs

    def __call__(self, input_ids, **_):
        for ids, per_token in self.pairs:
            if ids is input_ids:
                zeros = torch.zeros_like(per_token)
                return SimpleNamespace(
                    log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
                )
        raise AssertionError("unexpected input_ids")


def trl_dpo(i, loss_types, loss_weights, beta, label_smoothing=0.0):
    from trl.trainer.dpo_trainer import DPOTrainer

    logps = torch.stack([PC[i], PR[i]])
    ids, mask, per_token = sequences(logps, torch.stack([CL[i], RL[i]]))
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "completion_mask": mask,
        "ref_chosen_logps": RC[i : i + 1],
        "ref_rejected_logps": RR[i : i + 1],
    }
    this = trainer(
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        loss_types=loss_types,
        loss_weights=loss_weights,
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
    )
    return float(DPOTrainer._compute_loss(this, Model((ids, per_token)), inputs, False))


CASES = [
    (["sigmoid"], [1.0], 0.1, 0.0, {}),
    (["ipo"], [1.0], 0.1, 0.0, {}),
    (["hinge"], [1.0], 0.5, 0.0, {}),
    (["robust"], [1.0], 0.1, 0.2, {}),
    (["exo_pair"], [1.0], 0.1, 0.1, {}),
    (["nca_pair"], [1.0], 0.1, 0.0, {}),
    (["bco_pair"], [1.0], 0.1, 0.0, {"bco_delta": 0.0}),  # trl 1.16 dropped the running mean
    (["sppo_hard"], [1.0], 0.1, 0.0, {}),
    (["apo_zero"], [1.0], 0.1, 0.0, {}),
    (["apo_down"], [1.0], 0.1, 0.0, {}),
    (["sigmoid", "ipo", "hinge"], [0.8, 0.2, 1.0], 0.1, 0.0, {}),
]


@pytest.mark.parametrize("types, weights, beta, ls, extra", CASES, ids=lambda c: str(c))
def test_dpo_matches_trl(types, weights, beta, ls, extra):
    ours = dpo(
        PC,
        PR,
        RC,
        RR,
        beta=beta,
        loss_type=types,
        loss_weights=weights,
        label_smoothing=ls,
        chosen_lengths=CL,
        rejected_lengths=RL,
        **extra,
    )
    for i in range(len(PC)):
        assert float(ours.losses[i]) == pytest.approx(
            trl_dpo(i, types, weights, beta, ls),
            rel=1e-7,  # exo_pair: TRL's epsilon is float32
        )


def test_kto_matches_trl():
    from trl.trainer.kto_trainer import KTOTrainer

    policy = torch.tensor([-4.0, -6.0, -3.0, -8.0, -2.0], dtype=torch.float64)
    reference = torch.tensor([-5.0, -5.5, -3.5, -7.0, -2.5], dtype=torch.float64)
    policy_kl = torch.tensor([-3.0, -4.0, -2.0, -6.0, -1.0], dtype=torch.float64)
    reference_kl = torch.tensor([-3.5, -4.2, -2.1, -6.0, -1.2], dtype=torch.float64)
    labels = torch.tensor([True, False, True, False, True])
    ids, mask, per_token = sequences(policy, torch.ones(5, dtype=torch.long))
    kl_ids, kl_mask, kl_per_token = sequences(policy_kl, torch.ones(5, dtype=torch.long))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "completion_mask": mask,
        "KL_input_ids": kl_ids,
        "KL_attention_mask": torch.ones_like(kl_ids),
        "KL_completion_mask": kl_mask,
        "label": labels,
        "ref_logps": reference,
        "ref_KL_logps": reference_kl,
    }
    for beta, wd, wu in ((0.1, 1.0, 1.0), (0.5, 1.33, 0.7)):
        this = trainer(
            calculate_KL=True,
            loss_type="kto",
            beta=beta,
            desirable_weight=wd,
            undesirable_weight=wu,
        )
        this._compute_kl_logps = lambda model, batch, this=this: KTOTrainer._compute_kl_logps(
            this, model, batch
        )
        model = Model((ids, per_token), (kl_ids, kl_per_token))
        theirs = float(KTOTrainer._compute_loss(this, model, batch, False))
        ours = kto(
            policy,
            reference,
            labels,
            policy_kl,
            reference_kl,
            beta=beta,
            desirable_weight=wd,
            undesirable_weight=wu,
        )
        assert float(ours.losses.mean()) == pytest.approx(theirs, rel=1e-9)
        assert this._metrics["eval"]["kl"][-1] == pytest.approx(float(ours.kl))


@pytest.mark.parametrize("loss_type, ls", [("sigmoid", 0.0), ("sigmoid", 0.2), ("hinge", 0.0)])
def test_cpo_matches_trl(loss_type, ls):
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    this = SimpleNamespace(
        alpha=0.0,
        beta=0.2,
        label_smoothing=ls,
        loss_type=loss_type,
        simpo_gamma=0.5,
        accelerator=Accelerator(),
    )
    losses, chosen, rejected = CPOTrainer.cpo_loss(this, PC, PR)
    ours = cpo(PC, PR, beta=0.2, loss_type=loss_type, label_smoothing=ls, cpo_alpha=0.0)
    torch.testing.assert_close(ours.losses, losses)
    torch.testing.assert_close(ours.chosen_rewards, chosen)
    torch.testing.assert_close(ours.rejected_rewards, rejected)


def test_simpo_matches_trl_cpo_simpo():
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    this = SimpleNamespace(
        alpha=0.0,
        beta=2.0,
        label_smoothing=0.1,
        loss_type="simpo",
        simpo_gamma=0.5,
        accelerator=Accelerator(),
    )
    losses, chosen, rejected = CPOTrainer.cpo_loss(this, PC / CL, PR / RL)
    ours = simpo(
        PC,
        PR,
        beta=2.0,
        simpo_gamma=0.5,
        label_smoothing=0.1,
        chosen_lengths=CL,
        rejected_lengths=RL,
    )
    torch.testing.assert_close(ours.losses, losses)
    torch.testing.assert_close(ours.chosen_rewards, chosen)


def test_orpo_matches_trl():
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    pc, pr = (PC / CL).float(), (PR / RL).float()  # TRL computes the odds in float32
    this = SimpleNamespace(beta=0.1, accelerator=Accelerator())
    losses, chosen, rejected, ratio, log_odds = ORPOTrainer.odds_ratio_loss(this, pc, pr)
    ours = orpo(PC.float(), PR.float(), beta=0.1, chosen_lengths=CL, rejected_lengths=RL)
    # TRL returns beta * logsigmoid(log odds); its trainer subtracts the mean from the NLL
    torch.testing.assert_close(ours.losses, -pc - losses)
    torch.testing.assert_close(ours.chosen_rewards, chosen)
    assert ours.metrics["log_odds_ratio"] == pytest.approx(float(ratio), rel=1e-6)
    assert ours.metrics["log_odds_chosen"] == pytest.approx(float(log_odds), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_gkd_matches_trl(beta, temperature):
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 5, 17, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 5, 17, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 17, (2, 5), generator=generator)
    labels[0, :2] = -100
    theirs = GKDTrainer.generalized_jsd_loss(
        student, teacher, labels, beta=beta, temperature=temperature, reduction="sum"
    )
    ours = gkd(student, teacher, labels, beta=beta, temperature=temperature)
    torch.testing.assert_close(ours, theirs)
    theirs_mean = GKDTrainer.generalized_jsd_loss(
        student, teacher, labels, beta=beta, temperature=temperature
    )  # batchmean
    torch.testing.assert_close(
        gkd(student, teacher, labels, beta=beta, temperature=temperature, reduction="mean"),
        theirs_mean,
    )
