"""Megatron-Core's own GPTModel on this CPU, fed the converted weights: its logits must be the
Hugging Face model's. Run by test_mcore_cpu.py (in a fresh interpreter, possibly another
environment's: MARTLET_MCORE_PYTHON), as

    python mcore_cpu_check.py HF_DIR TP LAYOUT

TP processes over gloo (``torch.multiprocessing``), Megatron-Core's local layer spec (no
Transformer Engine on a CPU). Megatron-Core assumes CUDA in a few places that do not matter
for a forward pass in float32: the device of rotary frequencies and default masks
(``torch.cuda.current_device`` answers the CPU here) and the model-parallel RNG tracker
(dropout is 0; its fork is a no-op here). Prints ``max-abs-diff <value>`` from rank 0.
"""

from __future__ import annotations

import contextlib
import os
import sys


def run(rank: int, folder: str, tp: int, port: str) -> None:
    import torch

    torch.cuda.current_device = lambda: torch.device("cpu")  # see the module's docstring
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=tp)
    from megatron.core import parallel_state, tensor_parallel

    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp)
    tensor_parallel.get_cuda_rng_tracker().fork = lambda *a, **k: contextlib.nullcontext()

    from martlet_megatron.convert import hf_to_mcore, read_hf_weights
    from martlet_megatron.families import read_config, shape_of
    from martlet_megatron.model import build_gpt, load_converted

    hf = read_config(folder)
    shape = shape_of(hf)
    model, layout = build_gpt(hf, tp=tp, transformer_engine=False, use_cpu_initialization=True)
    shard = hf_to_mcore(read_hf_weights(folder), shape, tp=tp, layout=layout, ranks=[(0, rank)])
    load_converted(model, shard[(0, rank)])
    model.eval()
    seq = 19
    ids = torch.randint(0, shape.vocab_size, (2, seq), generator=torch.Generator().manual_seed(5))
    positions = torch.arange(seq).unsqueeze(0).expand(2, -1)
    mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)[None, None]
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=positions, attention_mask=mask)
    logits = logits[..., : shape.vocab_size]
    if rank == 0:
        from transformers import AutoModelForCausalLM

        reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        with torch.no_grad():
            want = reference(input_ids=ids).logits
        print(f"layout {layout} logits {tuple(logits.shape)}")
        print(f"max-abs-diff {float((logits - want).abs().max()):.3e}", flush=True)
    dist.barrier()
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def main() -> None:
    import socket

    import torch.multiprocessing as mp

    folder, tp = sys.argv[1], int(sys.argv[2])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    mp.spawn(run, args=(folder, tp, port), nprocs=tp, join=True)


if __name__ == "__main__":
    main()
