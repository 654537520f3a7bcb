"""martlet-rewards: the reward functions of online RL (``--reward-funcs``)."""
