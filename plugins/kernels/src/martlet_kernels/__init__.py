"""martlet-kernels: layers a training run switches into its model (``--kernels``)."""

__version__ = "0.1.0"
