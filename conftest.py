"""Repository-wide test setup (pytest reads this for every package's tests).

Tests run the same on every CPU: the precision that ``auto`` chooses follows the CPU's bf16
support, so the suite pins the CPU to report none (``MARTLET_CPU_BF16=0``: float32, as on an
AVX2-only CPU). Tests of the bf16 paths set it to 1 themselves, on tiny models; set it before
running pytest to run the whole suite the other way.
"""

import os

os.environ.setdefault("MARTLET_CPU_BF16", "0")
