"""Repository-wide test setup (pytest reads this for every package's tests).

Tests run the same on every CPU: the precision that ``auto`` chooses follows the CPU's bf16
support, so the suite pins the CPU to report none (``MARTLET_CPU_BF16=0``: float32, as on an
AVX2-only CPU). Tests of the bf16 paths set it to 1 themselves, on tiny models; set it before
running pytest to run the whole suite the other way.
"""

import os

os.environ.setdefault("MARTLET_CPU_BF16", "0")

# Property tests (hypothesis) draw the same examples on every run of `make test`, so the suite
# passes or fails the same way on every machine; `HYPOTHESIS_PROFILE=explore` draws new random
# examples, many more of them (`make fuzz`), to look for new failures.
try:
    from hypothesis import settings
except ImportError:  # an environment without the property tests
    pass
else:
    settings.register_profile("repeatable", derandomize=True, database=None)
    settings.register_profile("explore", max_examples=5000, database=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
