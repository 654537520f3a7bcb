"""Testing compiled (numba) kernels as an AVX2-only CPU would build and run them.

On a CPU with AVX512, numba and LLVM emit AVX512 code; an AVX2-only CPU (AMD's Zen 3, older
Intel) builds its own. :func:`run_avx2_child` runs a test file's ``check_the_avx2_build()`` in a
subprocess whose numba compiles for Haswell (AVX2 and FMA, no AVX512) and whose torch runs its
AVX2 kernels, with a fresh numba cache seeded with this process's native build, so the child
also proves that a cache written on one CPU is not loaded on another. Inside the child,
:func:`seed_with_the_native_cache` (before the kernels run) and :func:`check_built_for_avx2`
(after) do their parts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

# numba compiles for Haswell (AVX2 and FMA, no AVX512: what an AVX2-only CPU such as AMD's Zen 3
# runs) and torch runs its AVX2 kernels. NUMBA_CPU_FEATURES must be set too (empty: the CPU
# model's own features): with NUMBA_CPU_NAME alone numba keeps the host's feature list
# (+avx512f, ...) and LLVM still emits AVX512 code.
AVX2_ENV = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "ATEN_CPU_CAPABILITY": "avx2"}
# registers and instructions only AVX512 has (AT&T syntax, as numba's inspect_asm prints it)
AVX512_ASM = re.compile(
    r"%zmm|%[xy]mm(?:1[6-9]|2\d|3[01])\b|%k[0-7]\b|vpmullq|vpternlog|vpro[lr]v?q|vpsraq|kmov"
)
_CHILD = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_avx2_child', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module.check_the_avx2_build()\n"
)


def run_avx2_child(test_file: str, tmp_path: Any, kernels: Any) -> None:
    """Run ``check_the_avx2_build()`` of ``test_file`` in a subprocess under
    :data:`AVX2_ENV`, with a fresh numba cache holding a copy of this process's (native)
    build of ``kernels``; fails with the child's output when it fails."""
    from numba.core.registry import cpu_target

    native_cache = kernels[0]._cache._cache_path
    if not all(os.path.exists(kernel._cache._cache_file._index_path) for kernel in kernels):
        native_cache = ""  # nothing cached on disk here: the cross-CPU check is left out
    native = [cpu_target.target_context.codegen().magic_tuple(), native_cache]
    env = {
        **os.environ,
        **AVX2_ENV,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
        "MARTLET_NATIVE_NUMBA": json.dumps(native),
    }
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(test_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stdout + child.stderr


def seed_with_the_native_cache(kernels: Any) -> None:
    """(In the child, before the first call) copy the parent's cache files of ``kernels`` —
    index and compiled code, keyed by the parent's CPU — into this process's cache."""
    native_cache = json.loads(os.environ["MARTLET_NATIVE_NUMBA"])[1]
    if not native_cache:
        return
    for kernel in kernels:
        base = kernel._cache._cache_file._index_name.removesuffix("nbi")
        os.makedirs(kernel._cache._cache_path, exist_ok=True)
        for name in os.listdir(native_cache):
            if name.startswith(base):
                shutil.copy(os.path.join(native_cache, name), kernel._cache._cache_path)


def check_built_for_avx2(kernels: Any) -> None:
    """(In the child, after the kernels ran) the environment took effect, each kernel was
    compiled here for Haswell — not loaded from the parent's cache copied in beforehand — with
    no AVX512 instruction, and its cache index holds that build apart from the parent's."""
    import numba
    import torch
    from numba.core.registry import cpu_target

    assert numba.config.CPU_NAME == "haswell" and numba.config.CPU_FEATURES == ""
    cpu = cpu_target.target_context.codegen().magic_tuple()
    assert cpu[1:] == ("haswell", ""), cpu
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    native_cpu, native_cache = json.loads(os.environ["MARTLET_NATIVE_NUMBA"])
    for kernel in kernels:
        assert not kernel.stats.cache_hits and kernel.stats.cache_misses, kernel
        for asm in kernel.inspect_asm().values():
            found = AVX512_ASM.search(asm)
            assert found is None, (kernel, found)
        cpus = {key[1] for key in kernel._cache._cache_file._load_index()}
        assert cpu in cpus
        assert not native_cache or tuple(native_cpu) in cpus
