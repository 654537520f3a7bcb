"""The contract of a quantizer record: at every width it claims, the SDK's tiny Llama quantizes
to outputs near the original's; what it saves loads back to the same outputs; LoRA trains on
it; and the widths and devices it does not support are refused with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from martlet_sdk.contracts.base import RecordContract

#: the largest relative error of the logits allowed at a width (bits -> bound); the error is
#: also required to be well below a differently seeded model's (see _checked)
BOUNDS = {1: 1.0, 2: 0.9, 3: 0.6, 4: 0.45, 5: 0.3, 6: 0.2, 8: 0.08, 16: 0.02, 32: 1e-4}
#: the tiny model's widths: multiples of every usual group and block size (32, 64, 128)
SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}


def _bound(bits: int | None) -> float:
    if bits is None:
        return 0.45
    return BOUNDS.get(bits, BOUNDS[max(b for b in BOUNDS if b <= bits)] if bits > 1 else 1.0)


def _logits(model: Any, ids: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(input_ids=ids.to(next(model.parameters()).device)).logits.float().cpu()


def _relative(a: Any, b: Any) -> float:
    return float((a - b).norm() / b.norm())


class QuantizerContract(RecordContract):
    """A quantizer: registration checks, the methods of the stages it claims, and — where its
    library runs here — quantizing the tiny model at every claimed width, saving and reloading,
    LoRA training on the quantized model, and clear refusals.

    Optional fixtures: ``widths`` (the widths to check; default the record's ``bits``, else 4)
    and ``quant_options`` (the quantizer's own options, by name)."""

    kind = "quantizers"

    def test_impl_has_the_interface(self, record, impl):  # type: ignore[override]
        needed = {"load": "quantize_on_load", "export": "export"}
        for stage in record.stages:
            if stage in needed:
                assert callable(getattr(impl, needed[stage], None)), (
                    f"{record.impl} claims the {stage!r} stage but lacks {needed[stage]}()"
                )

    # fixtures --------------------------------------------------------------------------

    @pytest.fixture
    def contract_manager(self, plugin: Any) -> Any:
        """The plugin under test, with the plugins a quantized model needs around it where
        they are installed: a model loader (martlet-hf) and LoRA (martlet-peft)."""
        from importlib.metadata import entry_points

        from martlet_sdk.isolation import activated, isolated_manager

        installed = {ep.name for ep in entry_points(group="martlet")}
        companions = [name for name in ("hf", "peft") if name in installed and name != plugin]
        manager = isolated_manager(plugin, *companions)
        with activated(manager):
            yield manager

    @pytest.fixture
    def widths(self, record: Any) -> list[int | None]:
        return list(record.bits) or [None]

    @pytest.fixture
    def quant_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def model_dir(self, tmp_path_factory: Any) -> Path:
        from martlet_sdk.tiny import tiny_model, tiny_tokenizer

        folder = tmp_path_factory.mktemp("quantizer-contract-model")
        tokenizer = tiny_tokenizer()
        tiny_model(seed=0, tokenizer=tokenizer, **SHAPE).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    @pytest.fixture
    def ids(self) -> Any:
        import torch

        return torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))

    def _runs_here(self, record: Any) -> None:
        if record.needs_cuda:
            import torch

            if not torch.cuda.is_available():
                pytest.skip(f"quantizer {record.name!r} needs a CUDA GPU")

    def _checked(self, quantized: Any, model_dir: Path, ids: Any, bits: int | None) -> None:
        """``quantized``'s logits are within the width's bound of the original's, and closer
        to them than a differently seeded random model's."""
        import martlet

        from martlet_sdk.tiny import tiny_model

        plain, _ = martlet.load_model(str(model_dir), torch_dtype="float32")
        reference = _logits(plain, ids)
        error = _relative(_logits(quantized, ids), reference)
        stranger = _relative(_logits(tiny_model(seed=7, **SHAPE), ids), reference)
        assert error <= _bound(bits), f"{bits}-bit logits {error:.3f} off (bound {_bound(bits)})"
        # random weights lose most of what they carry at 1-2 bits: there, only nearer than a
        # stranger; from 3 bits on, well within half of it
        margin = 0.5 if bits is None or bits >= 3 else 1.0
        assert error < margin * stranger, (
            f"{bits}-bit logits are {error:.3f} off, as far as another random model's "
            f"({stranger:.3f}): the weights were not kept"
        )

    # load time ---------------------------------------------------------------------------

    def test_quantizes_the_tiny_model_at_every_width(
        self, record, impl, model_dir, ids, widths, quant_options
    ):
        if "load" not in record.stages:
            pytest.skip(f"quantizer {record.name!r} does not work at load time")
        self._runs_here(record)
        import martlet

        for bits in widths:
            model, _ = martlet.load_model(
                str(model_dir),
                torch_dtype="float32",
                quant_method=record.name,
                quant_bits=bits,
                quant_options=quant_options,
            )
            self._checked(model, model_dir, ids, bits)

    def test_what_it_saves_loads_back_the_same(
        self, record, impl, model_dir, ids, widths, quant_options, tmp_path
    ):
        if "load" not in record.stages and "export" not in record.stages:
            pytest.skip(f"quantizer {record.name!r} neither loads nor exports")
        self._runs_here(record)
        import martlet

        bits = widths[0]
        if "export" in record.stages:  # what `martlet export --quant-method` writes
            plain, tokenizer = martlet.load_model(str(model_dir), torch_dtype="float32")
            out = tmp_path / "exported"
            out.mkdir()
            impl().export(
                plain,
                tokenizer,
                str(out),
                bits,
                calibration=_calibration(tokenizer),
                **quant_options,
            )
            written = _loadable(out)
            first, _ = martlet.load_model(written, torch_dtype="float32")
            self._checked(first, model_dir, ids, bits)
            again, _ = martlet.load_model(written, torch_dtype="float32")
        else:  # a model quantized as it loaded, saved with save_pretrained
            first, tokenizer = martlet.load_model(
                str(model_dir),
                torch_dtype="float32",
                quant_method=record.name,
                quant_bits=bits,
                quant_options=quant_options,
            )
            out = tmp_path / "saved"
            first.save_pretrained(out)
            tokenizer.save_pretrained(out)
            again, _ = martlet.load_model(str(out), torch_dtype="float32")
        import torch

        torch.testing.assert_close(_logits(again, ids), _logits(first, ids), rtol=1e-4, atol=1e-4)

    def test_lora_trains_on_the_quantized_model(
        self, record, impl, model_dir, ids, widths, quant_options
    ):
        if "load" not in record.stages:
            pytest.skip(f"quantizer {record.name!r} does not work at load time")
        self._runs_here(record)
        import martlet
        import torch
        from martlet.manager import get_manager

        try:
            tuner_record = get_manager().registry.get("tuners", "lora")
        except Exception:  # noqa: BLE001 - martlet-peft is not installed here
            pytest.skip("LoRA needs martlet-peft")
        model, _ = martlet.load_model(
            str(model_dir),
            torch_dtype="float32",
            quant_method=record.name,
            quant_bits=widths[0],
            quant_options=quant_options,
        )
        import dataclasses
        from types import SimpleNamespace

        tuner = tuner_record.load()()
        values = dataclasses.asdict(tuner_record.options_class()())
        values.update(lora_rank=8, target_modules=["all-linear"], lora_dropout=0.0)
        model = tuner.prepare(model, SimpleNamespace(learning_rate=1e-2, **values))
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert trainable, "LoRA found no layer to adapt on the quantized model"
        optimizer = torch.optim.AdamW(trainable, lr=1e-2)
        model.train()
        losses = []
        for _ in range(6):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        assert losses[-1] < losses[0], f"the loss did not go down: {losses}"

    # refusals ------------------------------------------------------------------------------

    def test_unclaimed_widths_are_refused_clearly(self, record, impl):
        if not record.bits:
            pytest.skip(f"quantizer {record.name!r} claims no fixed widths")
        from martlet.errors import ConfigError
        from martlet.quantize import chosen

        stage = next(s for s in record.stages if s in ("load", "export"))
        width = next(b for b in (3, 5, 6, 7, 9, 12) if b not in record.bits)
        with pytest.raises(ConfigError, match=f"cannot quantize to {width} bits"):
            chosen(record.name, width, stage=stage, cuda=True)

    def test_without_cuda_a_cuda_only_quantizer_is_refused(self, record):
        if not record.needs_cuda:
            pytest.skip(f"quantizer {record.name!r} does not need CUDA")
        from martlet.errors import MartletError
        from martlet.quantize import chosen

        stage = next(s for s in record.stages if s in ("load", "export"))
        with pytest.raises(MartletError, match="needs a CUDA GPU"):
            chosen(record.name, record.bits[0] if record.bits else None, stage=stage, cuda=False)


def _calibration(tokenizer: Any) -> Any:
    def take(n: int) -> list[list[int]]:
        text = "The quick brown fox jumps over the lazy dog. " * 8
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:64]
        return [ids] * min(n, 8)

    return take


def _loadable(out: Path) -> str:
    """What an export wrote that a model loader reads: the folder, or its one model file."""
    files = [p for p in out.iterdir() if p.suffix == ".gguf"]
    return str(files[0]) if len(files) == 1 else str(out)
