"""A third-party plugin for the web UI's tests: a tuner and a loss with options of their own,
from a module on ``sys.path`` (as an installed package's would be), registered as a local
plugin beside Martlet's own."""

from __future__ import annotations

import textwrap

import pytest

OPTIONS = '''
    from dataclasses import dataclass
    from typing import Literal

    from martlet.config import option, require


    @dataclass(kw_only=True)
    class NormOptions:
        """Acme's norm tuner: only the final norm trains"""

        acme_scale: float = option(1.0, help="Multiply the norm's weight by this first.")
        acme_mode: Literal["fast", "exact"] = option("fast", help="How to scale.")
        acme_layers: list[int] = option(default_factory=list, help="Layers to touch.")
        acme_bias: bool = option(False, help="Train the bias too.")
        acme_limit: int | None = option(None, help="Stop scaling after N steps.")

        def __post_init__(self):
            require(self.acme_scale > 0, "acme-scale", self.acme_scale, "more than 0", "2")


    @dataclass(kw_only=True)
    class WeightedOptions:
        """Acme's weighted cross-entropy"""

        acme_weight: float = option(1.0, help="Multiply the summed loss by this.")


    class NormTuner:
        pass


    def weighted_loss(model, batch, **options):
        raise NotImplementedError
'''


class AcmePlugin:
    """Registers the tuner ``acme-norm`` and the batch loss ``acme-weighted``."""

    def __init__(self) -> None:
        from martlet import hookimpl
        from martlet.records import LossRecord, TunerRecord

        @hookimpl
        def martlet_tuners():
            yield TunerRecord(
                name="acme-norm",
                impl="acme_webui:NormTuner",
                options="acme_webui:NormOptions",
                summary="Trains the final norm only.",
                capabilities={"train", "cpu"},
            )

        @hookimpl
        def martlet_losses():
            yield LossRecord(
                name="acme-weighted",
                impl="acme_webui:weighted_loss",
                options="acme_webui:WeightedOptions",
                summary="Cross-entropy times a weight.",
            )

        self.martlet_tuners = martlet_tuners
        self.martlet_losses = martlet_losses


@pytest.fixture
def acme(tmp_path, monkeypatch):
    """The third-party plugin object (its module importable as ``acme_webui``)."""
    folder = tmp_path / "acme_site"
    folder.mkdir()
    (folder / "acme_webui.py").write_text(textwrap.dedent(OPTIONS))
    monkeypatch.syspath_prepend(str(folder))
    return AcmePlugin()
