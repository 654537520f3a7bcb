"""Preference-alignment and distillation objectives as pure functions of tensors.

The functions live in :mod:`martlet_align.preference` (``dpo``, ``simpo``, ``cpo``, ``orpo``),
:mod:`martlet_align.kto`, :mod:`martlet_align.reward` and :mod:`martlet_align.distill`; import
them from there (this module imports no torch).
"""
