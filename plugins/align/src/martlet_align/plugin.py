"""Registers the alignment and distillation losses (no torch import here)."""

from martlet import hookimpl
from martlet.records import LossRecord

MARTLET_API = 1


@hookimpl
def martlet_losses():
    yield LossRecord(
        name="dpo",
        options="martlet_align.options:DpoOptions",
        impl="martlet_align.preference:dpo",
        data="preference",
        reference=True,
        inputs="logps",
        summary="Direct Preference Optimization and its variants (ipo, hinge, robust, apo, ...).",
    )
    yield LossRecord(
        name="simpo",
        options="martlet_align.options:SimpoOptions",
        impl="martlet_align.preference:simpo",
        data="preference",
        inputs="logps",
        summary="SimPO: reference-free preference loss on length-averaged log-probs with a margin.",
    )
    yield LossRecord(
        name="cpo",
        options="martlet_align.options:CpoOptions",
        impl="martlet_align.preference:cpo",
        data="preference",
        inputs="logps",
        summary="Contrastive Preference Optimization: reference-free preference loss plus NLL.",
    )
    yield LossRecord(
        name="orpo",
        options="martlet_align.options:OrpoOptions",
        impl="martlet_align.preference:orpo",
        data="preference",
        inputs="logps",
        summary="ORPO: NLL on the chosen response plus an odds-ratio preference term.",
    )
    yield LossRecord(
        name="kto",
        options="martlet_align.options:KtoOptions",
        impl="martlet_align.kto:kto",
        data="kto",
        reference=True,
        inputs="logps",
        summary="Kahneman-Tversky Optimization on unpaired desirable/undesirable completions.",
    )
    yield LossRecord(
        name="rm",
        options="martlet_align.options:RewardOptions",
        impl="martlet_align.reward:bradley_terry",
        data="preference",
        inputs="rewards",
        aliases=("reward-model", "reward"),
        summary="Bradley-Terry reward-model loss on chosen/rejected scores.",
    )
    yield LossRecord(
        name="gkd",
        options="martlet_align.options:GkdOptions",
        impl="martlet_align.distill:gkd",
        data="messages",
        inputs="logits",
        summary="Generalized knowledge distillation: generalized JSD between student and teacher.",
    )
    # online RL (inputs="rollouts"): the record's impl is a class built with its options
    yield LossRecord(
        name="grpo",
        options="martlet_align.options:GrpoOptions",
        impl="martlet_align.online:Grpo",
        data="prompts",
        reference=True,
        inputs="rollouts",
        summary="GRPO: group-normalised advantages, clipped ratio, k3 KL (DAPO, Dr. GRPO, GSPO).",
    )
    yield LossRecord(
        name="rloo",
        options="martlet_align.options:RlooOptions",
        impl="martlet_align.online:Rloo",
        data="prompts",
        reference=True,
        inputs="rollouts",
        summary="RLOO: REINFORCE with the leave-one-out baseline and the KL in the reward.",
    )
    yield LossRecord(
        name="reinforce_pp",
        options="martlet_align.options:ReinforcePPOptions",
        impl="martlet_align.online:ReinforcePP",
        data="prompts",
        reference=True,
        inputs="rollouts",
        aliases=("reinforce++", "reinforce_plus_plus"),
        summary="REINFORCE++: per-token returns with the KL in the reward, whitened globally.",
    )
    yield LossRecord(
        name="ppo",
        options="martlet_align.options:PpoOptions",
        impl="martlet_align.online:Ppo",
        data="prompts",
        reference=True,
        inputs="rollouts",
        summary="PPO: a value head, GAE, clipped policy and value losses, KL in the reward.",
    )
