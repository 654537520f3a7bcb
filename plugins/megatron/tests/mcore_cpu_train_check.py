"""The megatron strategy's training hooks on this CPU, over gloo: two processes (tensor
parallel 2, or data parallel 2 with tensor parallel 1) take one optimizer step the way the
training loop drives it, and must match one process training the HF model on all the rows:
the gradient norm, the updated weights (gathered by ``saving``) and the optimizer state
(``optimizer_state_dict``, in one process's layout; loaded back by
``load_optimizer_state_dict``). Run by test_mcore_cpu.py as

    python mcore_cpu_train_check.py HF_DIR TP [packed]

(``packed``: each rank's rows come as one packed row with ``position_ids`` restarting at 0
for each, as ``--padding-free`` and ``--packing`` collate them.)

The same CUDA stand-ins as mcore_cpu_check.py; the accelerator is a stand-in whose device
says ``cuda`` (the strategy refuses anything else) while every tensor lives on the CPU.
Prints ``ok`` from rank 0.
"""

from __future__ import annotations

import contextlib
import os
import sys
from types import SimpleNamespace

WORLD = 2
IGNORE = -100


def make_optimizer(model):
    """The training loop's AdamW grouping: weight decay on matrices only. A large epsilon:
    Adam's first step is about ``lr × sign(gradient)``, which rounding flips for gradients
    near 0; with it the update follows the gradient smoothly and the comparison is fair."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.99), eps=1e-3, foreach=False)


def rows(vocab: int):
    """4 rows of two lengths (each rank's pair padded to its own length), prompt masked."""
    import torch

    g = torch.Generator().manual_seed(11)
    out = []
    for length in (9, 7, 13, 11):
        ids = torch.randint(0, vocab, (length,), generator=g)
        labels = ids.clone()
        labels[:3] = IGNORE
        out.append((ids, labels))
    return out


def batch_of(pairs):
    import torch

    width = max(len(i) for i, _ in pairs)
    ids = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for r, (i, lab) in enumerate(pairs):
        ids[r, : len(i)], labels[r, : len(i)], mask[r, : len(i)] = i, lab, 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def packed_of(pairs):
    """The rows as one packed row: ``position_ids`` restart at 0 for each, no mask."""
    import torch

    ids = torch.cat([i for i, _ in pairs]).unsqueeze(0)
    labels = torch.cat([lab for _, lab in pairs]).unsqueeze(0)
    positions = torch.cat([torch.arange(len(i)) for i, _ in pairs]).unsqueeze(0)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def loss_sum(model, batch):
    """The loop's causal LM loss: cross-entropy summed over the predicted tokens."""
    import torch.nn.functional as F

    inputs = {
        k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")
    }
    logits = model(**inputs).logits
    predicts = batch["labels"][:, 1:] != IGNORE
    picked = logits[:, :-1][predicts]
    return F.cross_entropy(picked.float(), batch["labels"][:, 1:][predicts], reduction="sum")


def run(rank: int, folder: str, tp: int, port: str, packed: bool) -> None:
    import torch

    torch.cuda.current_device = lambda: torch.device("cpu")
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    from megatron.core import tensor_parallel

    tensor_parallel.model_parallel_cuda_manual_seed = lambda *a, **k: None
    tensor_parallel.get_cuda_rng_tracker().fork = lambda *a, **k: contextlib.nullcontext()
    from martlet_megatron.strategy import Megatron
    from transformers import AutoModelForCausalLM

    def load():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).train()

    data = rows(load().config.vocab_size)
    mine = (packed_of if packed else batch_of)(data[2 * rank : 2 * rank + 2])
    accelerator = SimpleNamespace(device=SimpleNamespace(type="cuda"), is_main_process=rank == 0)
    strategy = Megatron(tensor_model_parallel_size=tp)
    model, optimizer = strategy.prepare(load(), make_optimizer, accelerator=accelerator)

    # the loop's step: loss scaled by the world size over the step's target count
    local = int((mine["labels"][:, 1:] != IGNORE).sum())
    total = torch.tensor(local)
    dist.all_reduce(total)
    with strategy.no_sync(model):
        pass
    loss = loss_sum(model, mine) * WORLD / int(total)
    loss.backward()
    norm = strategy.clip_grad_norm(model, 1e9)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    with strategy.saving(model):
        whole = model.state_dict() if rank == 0 else None
    saved = strategy.optimizer_state_dict(model, optimizer)

    # load one process's layout back into fresh shards: the same state comes out again
    shared = [saved]
    dist.broadcast_object_list(shared, src=0)
    strategy.load_optimizer_state_dict(model, optimizer, shared[0])
    again = strategy.optimizer_state_dict(model, optimizer)

    if rank == 0:
        reference = load()
        ref_opt = make_optimizer(reference)
        everything = batch_of(data)
        all_targets = int((everything["labels"][:, 1:] != IGNORE).sum())
        (loss_sum(reference, everything) / all_targets).backward()
        ref_norm = float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 1e9))
        ref_opt.step()
        assert abs(norm - ref_norm) < 1e-4 * ref_norm, (norm, ref_norm)
        ref_state = reference.state_dict()
        for name, tensor in whole.items():
            assert torch.allclose(tensor, ref_state[name], atol=2e-5, rtol=1e-4), name
        assert sorted(whole) == sorted(k for k in ref_state if k in whole)
        ref_saved = ref_opt.state_dict()
        assert len(saved["state"]) == len(ref_saved["state"])
        for index, entry in ref_saved["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                got = saved["state"][index][key]
                assert torch.allclose(got, entry[key], atol=1e-6, rtol=1e-3), (index, key)
                assert torch.equal(again["state"][index][key], got), (index, key)
            assert float(saved["state"][index]["step"]) == float(entry["step"])
        assert [g["params"] for g in saved["param_groups"]] == [
            g["params"] for g in ref_saved["param_groups"]
        ]
        print(f"norm {norm:.6f} reference {ref_norm:.6f}")
        print("ok", flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    import socket

    import torch.multiprocessing as mp

    folder, tp = sys.argv[1], int(sys.argv[2])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    packed = sys.argv[3:] == ["packed"]
    mp.spawn(run, args=(folder, tp, port, packed), nprocs=WORLD, join=True)


if __name__ == "__main__":
    main()
