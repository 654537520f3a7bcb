"""numba's compiled loops for :mod:`martlet_kernels.dropout` (imported only when numba is
installed; compiled on first use and cached on disk next to this file)."""

from __future__ import annotations

import numba
import numpy as np

from martlet_kernels.dropout import BF16_ONE, GOLDEN, MIX1, MIX2

_u64 = np.uint64


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _lanes(seed, w, threshold, value):  # pragma: no cover - compiled
    """Word ``w``'s four 16-bit lanes: ``value`` where the lane of SplitMix64's output for
    ``seed + (w + 1) * GOLDEN`` is ``>= threshold`` (kept), else 0 (dropped)."""
    z = _u64(seed) + _u64(w + 1) * _u64(GOLDEN)
    z = (z ^ (z >> _u64(30))) * _u64(MIX1)
    z = (z ^ (z >> _u64(27))) * _u64(MIX2)
    z = z ^ (z >> _u64(31))
    word = _u64(0)
    for lane in range(4):
        draw = (z >> _u64(16 * lane)) & _u64(0xFFFF)
        word |= (_u64(value) * _u64(draw >= _u64(threshold))) << _u64(16 * lane)
    return word


@numba.njit(cache=True, nogil=True, boundscheck=False)
def fill_mask_words(out, seed, threshold):  # pragma: no cover - compiled; tested via keep_mask
    """Word ``w`` of ``out`` (uint64): bfloat16 1.0 in the kept lanes of :func:`_lanes`, 0 in
    the dropped ones."""
    for w in range(out.shape[0]):
        out[w] = _lanes(seed, w, threshold, BF16_ONE)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def and_mask_words(src, dst, seed, threshold):  # pragma: no cover - compiled; tested via DropMask
    """``dst[w] = src[w]`` with the dropped lanes cleared: dropout applied to four bfloat16
    values per uint64 word, without a mask in memory. ``dst`` must not be ``src`` (LLVM's
    vectorised loop checks for overlap and runs a scalar loop, ~7x slower, when they are the
    same): :func:`and_mask_words_inplace`."""
    for w in range(src.shape[0]):
        dst[w] = src[w] & _lanes(seed, w, threshold, 0xFFFF)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def and_mask_words_inplace(words, seed, threshold):  # pragma: no cover - compiled
    """:func:`and_mask_words` with ``dst`` = ``src`` = ``words``."""
    for w in range(words.shape[0]):
        words[w] &= _lanes(seed, w, threshold, 0xFFFF)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _pairs(seed, w, threshold):  # pragma: no cover - compiled
    """Mask word ``w`` as two 64-bit masks over four float32 values (two per word): all ones
    where the lane is kept, zeros where it is dropped (the lanes of :func:`_lanes`)."""
    z = _u64(seed) + _u64(w + 1) * _u64(GOLDEN)
    z = (z ^ (z >> _u64(30))) * _u64(MIX1)
    z = (z ^ (z >> _u64(27))) * _u64(MIX2)
    z = z ^ (z >> _u64(31))
    full = _u64(0xFFFFFFFF)
    t = _u64(threshold)
    m0 = full * _u64((z & _u64(0xFFFF)) >= t)
    m1 = full * _u64(((z >> _u64(16)) & _u64(0xFFFF)) >= t)
    m2 = full * _u64(((z >> _u64(32)) & _u64(0xFFFF)) >= t)
    m3 = full * _u64((z >> _u64(48)) >= t)
    return m0 | (m1 << _u64(32)), m2 | (m3 << _u64(32))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def and_mask_words32(src, dst, seed, threshold):  # pragma: no cover - compiled
    """:func:`and_mask_words` for float32 values, two per uint64 word (``src.shape[0]`` even:
    four values per mask word); ``dst`` must not be ``src``."""
    for w in range(src.shape[0] // 2):
        low, high = _pairs(seed, w, threshold)
        dst[2 * w] = src[2 * w] & low
        dst[2 * w + 1] = src[2 * w + 1] & high


@numba.njit(cache=True, nogil=True, boundscheck=False)
def and_mask_words32_inplace(words, seed, threshold):  # pragma: no cover - compiled
    """:func:`and_mask_words32` with ``dst`` = ``src`` = ``words``."""
    for w in range(words.shape[0] // 2):
        low, high = _pairs(seed, w, threshold)
        words[2 * w] &= low
        words[2 * w + 1] &= high
