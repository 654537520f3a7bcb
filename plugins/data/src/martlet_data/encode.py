"""Moved to the core: :mod:`martlet.examples` (canonical rows -> encoded examples, the contract
between dataset sources, templates and training commands). Kept so that code importing it from
here keeps working.
"""

from martlet.examples import (  # noqa: F401
    IGNORE_INDEX,
    UNRENDERABLE,
    EncodedRows,
    EncodeStats,
    encode_rows,
)
