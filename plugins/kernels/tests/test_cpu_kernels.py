"""The compiled RMSNorm: the values and gradients of transformers' own module in bfloat16,
switched only where it applies, and given back after the run."""

from __future__ import annotations

import platform
import subprocess
import sys
import weakref

import pytest
import torch
from martlet_kernels import cpu_kernels
from martlet_kernels.cpu_kernels import kernels, rms_norm, use_cpu_kernels
from martlet_kernels.switching import restore
from martlet_sdk.isa import check_built_for_avx2, run_avx2_child, seed_with_the_native_cache
from martlet_sdk.tiny import tiny_model

pytest.importorskip("numba")
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402


def norm_with_weight(width: int, dtype=torch.bfloat16, trainable=False) -> LlamaRMSNorm:
    norm = LlamaRMSNorm(width, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(width, generator=torch.Generator().manual_seed(1)) + 1)
    norm = norm.to(dtype)
    norm.weight.requires_grad_(trainable)
    return norm


@pytest.mark.parametrize("trainable", [False, True])
def test_values_and_gradients_match_the_module_in_bfloat16(trainable):
    check_against_the_module((3, 40, 96), trainable)


def check_against_the_module(shape: tuple[int, ...], trainable: bool) -> None:
    """The kernels' output and gradients against LlamaRMSNorm's forward and autograd in
    bfloat16, for an input of ``shape`` (the last dimension normalised)."""
    generator = torch.Generator().manual_seed(0)
    norm = norm_with_weight(shape[-1], trainable=trainable)
    x = (torch.randn(shape, generator=generator) * 3).to(torch.bfloat16).requires_grad_()
    grad = torch.randn(shape, generator=generator).to(torch.bfloat16)

    ref = norm(x)
    ref.backward(grad)
    ref_x, ref_w = x.grad.clone(), norm.weight.grad.clone() if trainable else None
    x.grad = None
    norm.weight.grad = None

    out = rms_norm(x, norm.weight, norm.variance_epsilon)
    out.backward(grad)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    # the same two roundings: equal but where a float32 sum order moves a value by one step
    assert (out == ref).float().mean() > 0.999
    torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-2)
    # gradients: float32 throughout, rounded once (PyTorch rounds the steps to bfloat16)
    scale = float(ref_x.float().abs().max())
    torch.testing.assert_close(x.grad.float(), ref_x.float(), rtol=0, atol=0.02 * scale)
    if trainable:
        assert norm.weight.grad.dtype == torch.bfloat16
        scale = float(ref_w.float().abs().max())
        torch.testing.assert_close(
            norm.weight.grad.float(), ref_w.float(), rtol=0, atol=0.02 * scale
        )


def test_gradients_match_float64_more_closely_than_bfloat16_autograd():
    generator = torch.Generator().manual_seed(2)
    norm = norm_with_weight(64)
    x = torch.randn(50, 64, generator=generator).to(torch.bfloat16)
    grad = torch.randn(50, 64, generator=generator).to(torch.bfloat16)
    exact_x = x.double().requires_grad_()
    variance = exact_x.pow(2).mean(-1, keepdim=True)
    (norm.weight.double() * exact_x * torch.rsqrt(variance + 1e-5)).backward(grad.double())

    errors = []
    for fn in (norm, lambda t: rms_norm(t, norm.weight, 1e-5)):
        leaf = x.clone().requires_grad_()
        fn(leaf).backward(grad)
        errors.append(float((leaf.grad.double() - exact_x.grad).abs().max()))
    assert errors[1] <= errors[0]


def test_only_llama_style_bfloat16_norms_on_the_cpu_are_switched():
    model = tiny_model().to(torch.bfloat16)
    switched = use_cpu_kernels(model)
    norms = [m for m in model.modules() if isinstance(m, LlamaRMSNorm)]
    assert switched and len(switched) == len(norms)
    restore(switched)
    assert all("forward" not in vars(m) for m in norms)

    class OtherNorm(LlamaRMSNorm):  # a different forward: left alone
        def forward(self, hidden_states):
            return hidden_states * (1.0 + self.weight)

    other = OtherNorm(8)
    assert use_cpu_kernels(other) == []
    # a float32 model is left alone, and numba is not even loaded for it
    assert use_cpu_kernels(norm_with_weight(16, torch.float32)) == []
    # float32 inputs of a switched bfloat16 norm keep the module's own computation
    bf16 = norm_with_weight(16, torch.bfloat16)
    (switched,) = use_cpu_kernels(bf16)
    x = torch.randn(4, 16)
    torch.testing.assert_close(bf16(x), LlamaRMSNorm.forward(bf16, x))


def test_a_float32_model_does_not_load_numba():
    code = (
        "import sys, torch\n"
        "from martlet_sdk.tiny import tiny_model\n"
        "from martlet_kernels.cpu_kernels import kernels\n"
        "with kernels(tiny_model()) as n:\n"
        "    assert n == 0\n"
        "assert 'numba' not in sys.modules, 'numba loaded'\n"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_model_trains_the_same_with_and_without_the_kernels():
    torch.manual_seed(0)
    model = tiny_model().to(torch.bfloat16)
    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(4))
    losses = []
    for enabled in (False, True):
        model.zero_grad(set_to_none=True)
        with kernels(model, enabled=enabled) as count:
            assert (count > 0) == enabled
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters()])
        losses.append((float(loss.detach()), grads))
    assert abs(losses[0][0] - losses[1][0]) < 1e-2
    cosine = torch.nn.functional.cosine_similarity(losses[0][1], losses[1][1], dim=0)
    assert cosine > 0.999
    assert all("forward" not in vars(m) for m in model.modules() if isinstance(m, LlamaRMSNorm))


def test_a_bfloat16_sft_run_uses_the_kernels_and_the_option_turns_them_off(tmp_path, monkeypatch):
    pytest.importorskip("martlet_train", reason="martlet-train runs the training")
    from martlet_sdk.tiny import tiny_model_dir
    from martlet_train.job import sft

    calls = []
    original = cpu_kernels.rms_norm

    def counted(x, weight, eps):
        calls.append(x.shape[-1])
        return original(x, weight, eps)

    monkeypatch.setattr(cpu_kernels, "rms_norm", counted)
    model_dir = tiny_model_dir(tmp_path / "model")
    for enabled in (True, False):
        calls.clear()
        result = sft(
            {
                "model": str(model_dir),
                "dataset": ["sample-sft#8"],
                "tuner": "lora",
                "torch_dtype": "bfloat16",
                "max_length": 128,
                "per_device_train_batch_size": 2,
                "max_steps": 1,
                "kernels": ["auto" if enabled else "none"],
                "output_dir": str(tmp_path / f"run-{enabled}"),
                "disable_progress_bar": True,
            }
        )
        assert result.global_step == 1
        # the model's norms (the warm-up before the first step uses 4 values)
        assert any(width > 4 for width in calls) == enabled


# -- the kernels compiled for an AVX2-only CPU ---------------------------------------------------


def check_the_avx2_build() -> None:
    """Run by :func:`test_the_kernels_built_for_an_avx2_cpu_match_the_module` in a subprocess
    under :data:`martlet_sdk.isa.AVX2_ENV`: the values and gradients of the module, the same
    tolerances."""
    from martlet_kernels import _norm_kernel

    kernels = (_norm_kernel.rms_norm_forward, _norm_kernel.rms_norm_backward)
    seed_with_the_native_cache(kernels)
    for trainable in (False, True):
        # vector loops only, a vector loop and its remainder, a row shorter than a vector
        for shape in ((3, 40, 96), (6, 579), (4, 7)):
            check_against_the_module(shape, trainable)
    test_gradients_match_float64_more_closely_than_bfloat16_autograd()
    check_built_for_avx2(kernels)


@pytest.mark.slow
@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="an x86-64 CPU model"
)
def test_the_kernels_built_for_an_avx2_cpu_match_the_module(tmp_path):
    import llvmlite.binding as llvm
    from martlet_kernels import _norm_kernel

    features = llvm.get_host_cpu_features()
    if not (features.get("avx2") and features.get("fma")):
        pytest.skip("this CPU cannot run Haswell's instructions")
    cpu_kernels._warm_up()  # the native build, on disk for the child's cross-CPU check
    run_avx2_child(
        __file__, tmp_path, (_norm_kernel.rms_norm_forward, _norm_kernel.rms_norm_backward)
    )


def test_the_switches_survive_model_train_with_hub_kernels_on(tmp_path):
    """transformers 5 turns hub kernels on by default and re-applies them in model.train(),
    which dropped the switched forwards (the training run then never used the kernels)."""
    from martlet_sdk.tiny import tiny_model_dir
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir(tmp_path / "model"), dtype=torch.bfloat16
    )
    with cpu_kernels.kernels(model) as switched:
        assert switched
        model.train()
        model.eval()
        norms = [m for m in model.modules() if "forward" in vars(m)]
        assert len(norms) == switched


def test_within_a_budget_the_compiled_norms_outputs_are_recomputed_with_identical_gradients():
    from martlet_train.memory import ActivationBudget

    ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(0))

    def run(budget: bool):
        torch.manual_seed(0)
        model = tiny_model().to(torch.bfloat16).train()
        activation = ActivationBudget(model, 10**9) if budget else None
        with kernels(model) as count:
            assert count > 0
            if activation is not None:
                with activation.saving(model, ids.numel()):
                    loss = model(input_ids=ids, labels=ids).loss
                recipes = sum(
                    isinstance(kept[2], weakref.ref) for kept in activation.arena._copies.values()
                )
                assert recipes > 0  # q, k, v read the norm's output: computed again
            else:
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, budgeted = run(False), run(True)
    for name, grad in plain.items():
        assert torch.equal(budgeted[name], grad), name
