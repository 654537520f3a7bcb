"""The LMDeploy inference backend."""
