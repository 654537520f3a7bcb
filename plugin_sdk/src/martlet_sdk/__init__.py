"""The Martlet plugin SDK: contracts, pytest fixtures, a tiny offline model and a scaffold.

* :mod:`martlet_sdk.contracts` — base test classes, one per capability kind.
* :mod:`martlet_sdk.pytest_plugin` — fixtures ``martlet_manager``, ``martlet_cli``,
  ``tiny_model``, ``tiny_tokenizer`` and ``tiny_model_dir`` (registered with pytest
  automatically when this package is installed).
* :mod:`martlet_sdk.tiny` — a randomly initialised Llama-architecture model of a few hundred
  thousand parameters and a tokenizer built locally, in under a second, with no network.
* ``martlet plugin new NAME --kind KIND`` — a ready plugin package.
"""

__version__ = "0.1.0"
