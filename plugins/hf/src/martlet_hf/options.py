"""Moved to the core: :mod:`martlet.options` holds :class:`ModelOptions` and
:class:`TemplateOptions` (what every command passes to a model loader and a template, whichever
plugin provides them). Kept so that code importing them from here keeps working.
"""

from martlet.options import ModelOptions, TemplateOptions, check_num_labels  # noqa: F401
from martlet.tasks import TASK_TYPES, check_task_type  # noqa: F401
