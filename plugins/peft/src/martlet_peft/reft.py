"""ReFT with LoReFT interventions (Wu et al. 2024, "ReFT: Representation Finetuning").

At each chosen decoder layer the hidden state h becomes

    Φ(h) = h + Rᵀ (W h + b − R h)

where R (r × d) has orthonormal rows and W, b are a learned low-rank projection: the edit
lives in an r-dimensional subspace. The base model stays frozen; only R, W and b train.
Written from the paper (the ``pyreft`` package pins an old transformers). Interventions apply
at every position; they are not merged into weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError

from martlet_peft.base import Tuner, decoder_layers

CONFIG = "reft_config.json"
WEIGHTS = "reft_interventions.safetensors"
ATTR = "martlet_reft"


def _intervention(dim: int, rank: int) -> Any:
    import torch

    class LoReFT(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # R is kept orthonormal by construction: the Q factor of an unconstrained matrix
            basis = torch.empty(dim, rank)
            torch.nn.init.orthogonal_(basis)
            self.basis = torch.nn.Parameter(basis)
            self.source = torch.nn.Linear(dim, rank)

        def rotation(self) -> Any:
            q, _ = torch.linalg.qr(self.basis.float())
            return q.T.to(self.basis.dtype)  # (rank, dim), orthonormal rows

        def forward(self, h: Any) -> Any:
            r = self.rotation().to(h.dtype)
            edit = self.source(h) - h @ r.T
            return h + edit @ r

    return LoReFT()


def attach(model: Any, layers: list[int], rank: int) -> Any:
    """Add LoReFT interventions at ``layers`` (hooks on their outputs); returns the module dict."""
    import torch

    blocks = decoder_layers(model)
    dim = model.config.hidden_size
    if rank <= 0 or rank >= dim:
        raise ConfigError(f"--reft-rank must be between 1 and {dim - 1}, got {rank}")
    bad = [i for i in layers if not 0 <= i < len(blocks)]
    if bad:
        raise ConfigError(f"--reft-layers {bad} are not layers of this {len(blocks)}-layer model")
    interventions = torch.nn.ModuleDict({str(i): _intervention(dim, rank) for i in layers})
    setattr(model, ATTR, interventions)
    for i in layers:
        intervention = interventions[str(i)]

        def hook(module: Any, args: Any, output: Any, intervention: Any = intervention) -> Any:
            if isinstance(output, tuple):
                return (intervention(output[0]), *output[1:])
            return intervention(output)

        blocks[i].register_forward_hook(hook)
    return interventions


class ReftTuner(Tuner):
    """LoReFT on the outputs of ``--reft-layers`` (default: every layer), rank ``--reft-rank``."""

    seq_cls = False
    label = "reft"
    seq_cls_why = (
        "ReFT trains and saves only its interventions, while a reward model's new `score` head "
        "must train too"
    )

    def _prepare(self, model: Any, config: Any) -> Any:
        n = len(decoder_layers(model))
        self.layers = list(config.reft_layers) if config.reft_layers else list(range(n))
        self.rank = int(config.reft_rank)
        model.requires_grad_(False)
        attach(model, self.layers, self.rank)
        return model

    def save(self, model: Any, output_dir: str) -> None:
        from safetensors.torch import save_file

        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in getattr(model, ATTR).state_dict().items()}
        save_file(state, str(out / WEIGHTS))
        (out / CONFIG).write_text(json.dumps({"layers": self.layers, "rank": self.rank}))

    def load(self, model: Any, path: str) -> Any:
        from safetensors.torch import load_file

        folder = Path(path)
        if not (folder / CONFIG).is_file():
            raise MartletError(f"{path} is not a ReFT result", why=f"{CONFIG} is missing")
        spec = json.loads((folder / CONFIG).read_text())
        self.layers, self.rank = spec["layers"], spec["rank"]
        interventions = attach(model, self.layers, self.rank)
        interventions.load_state_dict(load_file(str(folder / WEIGHTS)))
        model.requires_grad_(False)
        return model

    def restore(self, model: Any, path: str) -> Any:
        """Load saved interventions into a prepared model (resuming a run)."""
        from safetensors.torch import load_file

        getattr(model, ATTR).load_state_dict(load_file(str(Path(path) / WEIGHTS)))
        return model
