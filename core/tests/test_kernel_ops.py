"""Operations kernels offer by name (martlet.kernels.provide / provided): offered only while
provided, found through the wrappers a training run puts around a model, and restricted to the
names the core defines."""

from __future__ import annotations

import pytest
from martlet.kernels import OPS, names, provide, provided


class Model:
    """A stand-in for a module: any object that can be weakly referenced."""


class Wrapper:
    """DDP/FSDP/DeepSpeed keep the model in ``.module``."""

    def __init__(self, module):
        self.module = module


class Peft:
    """A PEFT model gives its base model with ``get_base_model()``."""

    def __init__(self, base):
        self.base = base

    def get_base_model(self):
        return self.base


def loss(hidden, targets):
    return 0.0


def test_an_operation_is_offered_only_while_provided():
    model = Model()
    assert provided(model, "output_cross_entropy") is None
    with provide(model, "output_cross_entropy", loss):
        assert provided(model, "output_cross_entropy") is loss
        assert provided(model, "segment_attention") is None  # another name
        assert provided(Model(), "output_cross_entropy") is None  # another model
    assert provided(model, "output_cross_entropy") is None


def test_it_is_found_through_the_wrappers_of_a_run():
    base = Model()
    with provide(base, "output_cross_entropy", loss):
        assert provided(Wrapper(Peft(base)), "output_cross_entropy") is loss
        assert provided(Peft(Wrapper(base)), "output_cross_entropy") is loss
    peft = Peft(Model())
    with provide(peft, "segment_attention", loss):
        assert provided(Wrapper(peft), "segment_attention") is loss


def test_nested_offers_restore_the_outer_one():
    model = Model()

    def other(hidden, targets):
        return 1.0

    with provide(model, "output_cross_entropy", loss):
        with provide(model, "output_cross_entropy", other):
            assert provided(model, "output_cross_entropy") is other
        assert provided(model, "output_cross_entropy") is loss


def test_only_the_cores_operations_can_be_offered():
    with pytest.raises(ValueError, match="not an operation kernels offer"):
        with provide(Model(), "fast_softmax", loss):
            pass
    assert set(OPS) == {"output_cross_entropy", "segment_attention"}
    assert all(contract.startswith("fn(") for contract in OPS.values())


def test_kernel_names_split_on_commas_in_every_form():
    assert names(None) == ["auto"]
    assert names("auto, -fused-lora") == ["auto", "-fused-lora"]
    assert names(["auto,-a", "-b"]) == ["auto", "-a", "-b"]
