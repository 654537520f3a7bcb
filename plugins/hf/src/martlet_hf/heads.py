"""Moved to the core: :mod:`martlet.heads` (the task-head contract every command shares).

Kept so that code importing ``martlet_hf.heads`` keeps working; import ``martlet.heads``.
"""

from martlet.heads import last_token_index, score_module, sequence_scores  # noqa: F401
