"""Installing martlet-deepspeed costs nothing where DeepSpeed is not used: `martlet --help`,
`martlet plugins` and `martlet sft --help` never import it (nor do a `--parallel ddp` run and
an export: test_deepspeed.py), so DeepSpeed's start-up and its "Setting accelerator to CPU"
notice never happen there."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args", [("--help",), ("plugins",), ("sft", "--help")])
def test_the_cli_does_not_import_deepspeed(deepspeed_imported, args):
    result, modules = deepspeed_imported(*args)
    assert result.returncode == 0, result.stderr
    assert modules == []
    assert "Setting accelerator to CPU" not in result.stdout + result.stderr
