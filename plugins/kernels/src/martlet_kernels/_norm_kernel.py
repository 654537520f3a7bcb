"""numba's compiled loops for :mod:`martlet_kernels.cpu_kernels` (imported only when numba is
installed; compiled on first use and cached on disk next to this file).

bfloat16 tensors arrive as uint16 arrays: a bfloat16 is the upper half of a float32, so
``uint32(bits) << 16`` is its float32 value, and a float32 is rounded to the nearest bfloat16
(ties to even) by adding ``0x7FFF`` plus the lowest kept bit before dropping the lower half.
"""

from __future__ import annotations

import numba
import numpy as np

_u32 = np.uint32
_f32 = np.float32
# sums may be reordered (vectorised); no other fast-math liberties
_FAST = {"reassoc", "contract", "nsz"}


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _round(bits):  # pragma: no cover - compiled
    """float32 bits -> the bits of the nearest bfloat16, in the upper half."""
    return ((bits + _u32(0x7FFF) + ((bits >> _u32(16)) & _u32(1))) >> _u32(16)) << _u32(16)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _widen(bits):  # pragma: no cover - compiled
    """A float32 copy of a 1-D array of bfloat16 bits."""
    out = np.empty(bits.shape[0], _u32)
    for j in range(bits.shape[0]):
        out[j] = _u32(bits[j]) << _u32(16)
    return out.view(np.float32)


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_FAST)
def rms_norm_forward(x, weight, eps, out, rstd):  # pragma: no cover - compiled
    """``out = weight * bf16(x * rstd)`` row by row, ``rstd = 1 / sqrt(mean(x^2) + eps)``
    in float32 (the two roundings of transformers' Llama RMSNorm in bfloat16).
    ``x``, ``out``: uint16 ``[rows, n]``; ``weight``: uint16 ``[n]``; ``rstd``: float32
    ``[rows]`` (written, for the backward pass)."""
    rows, n = x.shape
    w = _widen(weight)
    t_bits = np.empty(n, _u32)
    t = t_bits.view(np.float32)
    for i in range(rows):
        for j in range(n):
            t_bits[j] = _u32(x[i, j]) << _u32(16)
        total = _f32(0.0)
        for j in range(n):
            total += t[j] * t[j]
        r = _f32(1.0) / np.sqrt(total / _f32(n) + _f32(eps))
        rstd[i] = r
        for j in range(n):
            t[j] = t[j] * r
        for j in range(n):
            t_bits[j] = _round(t_bits[j])
        for j in range(n):
            t[j] = t[j] * w[j]
        for j in range(n):
            out[i, j] = np.uint16(_round(t_bits[j]) >> _u32(16))


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_FAST)
def rms_norm_backward(x, weight, grad, rstd, grad_x, grad_weight):  # pragma: no cover
    """The gradients of :func:`rms_norm_forward`: ``grad_x`` (uint16 ``[rows, n]``, bfloat16
    bits) ``= r * (g - x * r^2 * mean(g * x))`` with ``g = grad * weight``, in float32; and,
    when ``grad_weight`` (float32 ``[n]``) has ``n`` entries, ``grad_weight += sum over rows
    of grad * bf16(x * r)``."""
    rows, n = x.shape
    with_weight = grad_weight.shape[0] == n
    w = _widen(weight)
    x_bits = np.empty(n, _u32)
    xf = x_bits.view(np.float32)
    g_bits = np.empty(n, _u32)
    g = g_bits.view(np.float32)
    n_bits = np.empty(n, _u32)
    normed = n_bits.view(np.float32)
    for i in range(rows):
        for j in range(n):
            x_bits[j] = _u32(x[i, j]) << _u32(16)
            g_bits[j] = _u32(grad[i, j]) << _u32(16)
        r = rstd[i]
        if with_weight:
            for j in range(n):
                normed[j] = xf[j] * r
            for j in range(n):
                n_bits[j] = _round(n_bits[j])
            for j in range(n):
                grad_weight[j] += g[j] * normed[j]
        total = _f32(0.0)
        for j in range(n):
            g[j] = g[j] * w[j]
            total += g[j] * xf[j]
        c = total * r * r / _f32(n)
        for j in range(n):
            g[j] = r * (g[j] - xf[j] * c)
        for j in range(n):
            grad_x[i, j] = np.uint16(_round(g_bits[j]) >> _u32(16))
