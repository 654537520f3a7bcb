"""The contract of a kernel record: while applied, the model computes what it computed without
it; afterwards the model has its own layers back."""

from __future__ import annotations

from typing import Any

import pytest

from martlet_sdk.contracts.base import RecordContract


def _loss_and_grads(model: Any, ids: Any) -> tuple[float, Any]:
    import torch

    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grads


class KernelContract(RecordContract):
    """A kernel: registration checks, the Kernel shape, and — where the record fits a float32
    training run on the CPU — the same loss and gradients on the SDK's tiny Llama with and
    without it, and the model's own layers back afterwards; for an inference kernel that runs
    on the CPU, the same logits (float32 or bfloat16, whichever it takes)."""

    kind = "kernels"
    interface = {"applied": None}

    def test_inference_computes_the_same_with_the_kernel(self, record: Any, impl: Any) -> None:
        dtypes = [d for d in ("float32", "bfloat16") if record.fits("cpu", d, "infer")]
        if not dtypes:
            pytest.skip(f"kernel {record.name!r} is not for inference on the CPU")
        import torch

        from martlet_sdk.tiny import tiny_model

        dtype = getattr(torch, dtypes[0])
        model = tiny_model(seed=0).to(dtype).eval()
        ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(1))
        forwards = {name: vars(m).get("forward") for name, m in model.named_modules()}
        with torch.inference_mode():
            plain = model(input_ids=ids).logits.float()
            with impl().applied(model, device="cpu", dtype=dtypes[0]) as count:
                assert isinstance(count, int) and count >= 0
                fast = model(input_ids=ids).logits.float()
        tolerance = 1e-5 if dtype == torch.float32 else 3e-2
        torch.testing.assert_close(fast, plain, rtol=tolerance, atol=tolerance)
        after = {name: vars(m).get("forward") for name, m in model.named_modules()}
        assert after == forwards, "the model's own layers are back afterwards"

    def test_the_model_computes_the_same_with_the_kernel(self, record: Any, impl: Any) -> None:
        if not record.fits("cpu", "float32"):
            pytest.skip(f"kernel {record.name!r} is not for training on the CPU in float32")
        import torch

        from martlet_sdk.tiny import tiny_model

        torch.manual_seed(0)
        model = tiny_model()
        ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(1))
        forwards = {name: vars(m).get("forward") for name, m in model.named_modules()}
        plain_loss, plain_grads = _loss_and_grads(model, ids)
        with impl().applied(model, device="cpu", dtype="float32") as count:
            assert isinstance(count, int) and count >= 0, "applied() yields how many it switched"
            loss, grads = _loss_and_grads(model, ids)
            offered = _offered(model)
        assert abs(loss - plain_loss) <= 1e-5 * max(1.0, abs(plain_loss))
        torch.testing.assert_close(grads, plain_grads, rtol=1e-4, atol=1e-6)
        after = {name: vars(m).get("forward") for name, m in model.named_modules()}
        assert after == forwards, "the model's own layers are back after the run"
        undeclared = set(offered) - set(record.provides)
        assert not undeclared, f"operations offered but not in the record's provides: {undeclared}"
        assert not _offered(model), "operations are offered only while the kernel is applied"


def _offered(model: Any) -> list[str]:
    """The operations of :data:`martlet.kernels.OPS` offered for ``model`` now."""
    from martlet.kernels import OPS, provided

    return [name for name in OPS if provided(model, name) is not None]
