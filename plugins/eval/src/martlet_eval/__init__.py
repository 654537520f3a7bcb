"""martlet-eval: ``martlet eval`` and the benchmark (eval task) records."""
