"""The embedded model on a CUDA device, in bfloat16 (skipped without one; tests/gpu/hf.sh)."""

from __future__ import annotations

import martlet
import pytest


@pytest.fixture(scope="session")  # set up before the session-wide tokenizer
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no cuda device on this machine")
    return torch


@pytest.mark.gpu
@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_the_default_model_answers_on_cuda_in_bfloat16(torch_cuda, smollm2_tokenizer, attn_impl):
    torch = torch_cuda
    model, tokenizer = martlet.load_model(
        "smollm2-135m-instruct", torch_dtype="bfloat16", device_map="cuda", attn_impl=attn_impl
    )
    assert model.device.type == "cuda" and model.dtype == torch.bfloat16
    prompt = martlet.load_template(tokenizer).encode_prompt(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    ids = torch.tensor([prompt["input_ids"]], device="cuda")
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
