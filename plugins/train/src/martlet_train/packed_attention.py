"""Attention inside packed rows, computed segment by segment.

A packed row (``martlet_data.packing``) holds several encoded rows one after another; each may
attend only to itself. A 4D block-diagonal mask gets that right with any attention kernel, but
the kernel still computes every query against every key of the whole packed row and throws most
of it away: for four 512-token rows of ~60-token segments that was 29% of a training step on a
CPU (``bench/RESULTS.md``), for attention work that, done segment by segment, is about a
tenth of it.

:func:`packed_attention` is registered with transformers' ``AttentionInterface`` as
``"martlet_packed"``. It finds the segments from ``position_ids`` (each restarts at 0), gathers
them into a few buckets of similar length (one padded ``[segments, heads, length, head_dim]``
batch per bucket) and runs causal attention on each bucket: the work is close to the sum of the
segments' own squares instead of the packed row's. Grouped-query heads share their key and
value tensors without copies (the queries of a group are stacked along the length). The
segment plan is computed once per batch and reused by every layer.

:func:`use_packed_attention` switches a model whose attention goes through transformers'
interface (``eager`` or ``sdpa``) to it; models with ``flash_attention_2`` (which reads packed
``position_ids`` itself) or their own attention keep the 4D mask. Without ``position_ids`` it
computes ordinary causal attention over each whole row, and a query shorter than its keys
(decoding with a cache) goes to transformers' sdpa; the training job switches the model only
for the run (:func:`switched`), since padded batches need their mask.

torch and transformers are imported when a function is called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

NAME = "martlet_packed"
# a bucket takes segments down to 1/RATIO of its longest: few buckets, little padding
RATIO = 1.3
SWITCHABLE = ("eager", "sdpa")

_plan_cache: dict[str, Any] = {}
# causal masks by (length, group, dtype, device), for the buckets of the current plan: emptied
# with every new plan (bucket lengths change from batch to batch)
_causal_cache: dict[tuple[Any, ...], Any] = {}
_CAUSAL_CACHE_MAX = 64


def register() -> None:
    """Register ``"martlet_packed"`` with transformers' attention and mask interfaces (the mask
    builder returns no mask: the segments come from ``position_ids``). Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, packed_attention)
    AttentionMaskInterface.register(NAME, _no_mask)


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None


def _base(model: Any) -> Any:
    """The transformers model inside ``model`` (a PEFT wrapper's base model, else itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def use_packed_attention(model: Any) -> bool:
    """Switch ``model`` (a transformers model, or a wrapper with ``get_base_model``) to
    segment-by-segment attention for packed rows; returns whether it was switched."""
    base = _base(model)
    config = getattr(base, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in SWITCHABLE:
        return False
    if not getattr(base, "_supports_attention_backend", False):
        return False
    register()
    base.set_attn_implementation(NAME)
    return True


@contextlib.contextmanager
def switched(model: Any) -> Iterator[bool]:
    """While active, ``model`` attends segment by segment where :func:`use_packed_attention`
    can switch it (yields whether it did); afterwards it has its own attention again."""
    own = getattr(getattr(_base(model), "config", None), "_attn_implementation", None)
    switch = use_packed_attention(model)
    try:
        yield switch
    finally:
        if switch:
            restore_attention(model, own)


def restore_attention(model: Any, implementation: str | None) -> None:
    """Switch ``model`` back to ``implementation`` (its own attention, e.g. after training on
    packed rows, before it generates with padded batches)."""
    base = _base(model)
    config = getattr(base, "config", None)
    if implementation and getattr(config, "_attn_implementation", None) == NAME:
        base.set_attn_implementation(implementation)


def segment_plan(position_ids: Any) -> tuple[list[tuple[Any, int, int, Any]], Any]:
    """The buckets of the segments of ``position_ids`` (``[batch, length]``, restarting at 0
    at each segment), as ``(buckets, order)``.

    Each bucket is ``(gather, count, length, keep)``: ``gather`` indexes the flattened
    ``batch * length`` positions (``count`` segments, each padded on the right to ``length``
    by repeating its last position), ``keep`` picks the real positions out of the bucket's
    flattened output. ``order`` puts the concatenated kept outputs of all buckets back in the
    flattened positions' order. Computed once per distinct ``position_ids`` (every layer of a
    forward pass reuses it).
    """
    import torch

    cached = _plan_cache.get("plan")
    if (
        cached is not None
        and cached[0].shape == position_ids.shape
        and cached[0].device == position_ids.device
        and torch.equal(cached[0], position_ids)
    ):
        return cached[1]
    batch, length = position_ids.shape
    starts = (position_ids == 0).clone()
    starts[:, 0] = True
    flat_starts = starts.reshape(-1).nonzero().flatten().tolist()
    # a segment never spans two rows: every row starts one
    ends = flat_starts[1:] + [batch * length]
    segments = sorted(zip(flat_starts, ends, strict=True), key=lambda s: (s[0] - s[1], s[0]))
    buckets = []
    placed = []
    i = 0
    while i < len(segments):
        longest = segments[i][1] - segments[i][0]
        j = i
        while j < len(segments) and (segments[j][1] - segments[j][0]) * RATIO >= longest:
            j += 1
        members = segments[i:j]
        gather = torch.empty(len(members), longest, dtype=torch.long)
        keep = []
        for s, (start, end) in enumerate(members):
            n = end - start
            gather[s, :n] = torch.arange(start, end)
            gather[s, n:] = end - 1
            keep.append(torch.arange(s * longest, s * longest + n))
            placed.append(torch.arange(start, end))
        device = position_ids.device
        buckets.append(
            (
                gather.reshape(-1).to(device),
                len(members),
                longest,
                torch.cat(keep).to(device),
            )
        )
        i = j
    order = torch.argsort(torch.cat(placed)).to(position_ids.device)
    plan = (buckets, order)
    _plan_cache["plan"] = (position_ids.clone(), plan)
    _causal_cache.clear()
    return plan


def _causal_bias(length: int, group: int, dtype: Any, device: Any) -> Any:
    """``[group * length, length]`` additive mask: -inf above the diagonal of each of
    ``group`` stacked causal blocks (the positions a query may not see), 0 elsewhere."""
    import torch

    key = (length, group, dtype, device)
    bias = _causal_cache.get(key)
    if bias is None:
        if len(_causal_cache) >= _CAUSAL_CACHE_MAX:  # whole rows of many lengths, no plan
            _causal_cache.clear()
        hidden = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
        bias = torch.zeros(length, length, dtype=dtype, device=device)
        bias = bias.masked_fill(hidden, float("-inf")).repeat(group, 1)
        _causal_cache[key] = bias
    return bias


def _bucket_attention(q: Any, k: Any, v: Any, scaling: float, dropout: float, training: bool):
    """Causal attention of one bucket: ``q`` ``[S, L, Hq, D]``, ``k``/``v`` ``[S, L, Hkv, D]``;
    returns ``[S, L, Hq, D]``. The ``Hq / Hkv`` query heads of a group are stacked along the
    length, so each group's keys and values are used without being repeated. Scores are
    scaled and masked in the product (``baddbmm``); the softmax runs in the inputs' dtype
    (PyTorch accumulates reduced-precision softmax in fp32)."""
    import torch

    count, length, heads, dim = q.shape
    kv_heads = k.shape[2]
    group = heads // kv_heads
    batch = count * kv_heads
    # [S * Hkv, group * L, D]: query heads h = kv * group + g, as transformers' repeat_kv
    # pairs them
    queries = q.view(count, length, kv_heads, group, dim).permute(0, 2, 3, 1, 4)
    queries = queries.reshape(batch, group * length, dim)
    keys = k.transpose(1, 2).reshape(batch, length, dim)
    values = v.transpose(1, 2).reshape(batch, length, dim)
    bias = _causal_bias(length, group, q.dtype, q.device)
    scores = torch.baddbmm(bias.expand(batch, -1, -1), queries, keys.transpose(1, 2), alpha=scaling)
    probs = torch.softmax(scores, dim=-1)
    if dropout > 0.0 and training:
        probs = torch.nn.functional.dropout(probs, p=dropout)
    out = torch.bmm(probs, values)  # [S * Hkv, group * L, D]
    out = out.view(count, kv_heads, group, length, dim).permute(0, 3, 1, 2, 4)
    return out.reshape(count, length, heads, dim)


def packed_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_ids: Any = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature: ``query`` ``[B, Hq, L, D]``, ``key`` and
    ``value`` ``[B, Hkv, L, D]``; returns ``([B, L, Hq, D], None)``. Causal attention within
    each segment of ``position_ids`` (each whole row when there are none)."""
    import torch

    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if scaling is None:
        scaling = dim**-0.5
    training = bool(getattr(module, "training", False))
    if key.shape[2] != length:  # decoding with a cache: a query against all earlier keys
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling
        )
    if position_ids is None or position_ids.shape != (batch, length):
        out = _bucket_attention(
            query.transpose(1, 2),
            key.transpose(1, 2),
            value.transpose(1, 2),
            scaling,
            dropout,
            training,
        )
        return out, None
    buckets, order = segment_plan(position_ids)
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)
    k = key.transpose(1, 2).reshape(batch * length, kv_heads, dim)
    v = value.transpose(1, 2).reshape(batch * length, kv_heads, dim)
    outputs = []
    for gather, count, longest, keep in buckets:
        out = _bucket_attention(
            q.index_select(0, gather).view(count, longest, heads, dim),
            k.index_select(0, gather).view(count, longest, kv_heads, dim),
            v.index_select(0, gather).view(count, longest, kv_heads, dim),
            scaling,
            dropout,
            training,
        )
        outputs.append(out.reshape(count * longest, heads, dim).index_select(0, keep))
    out = torch.cat(outputs).index_select(0, order)
    return out.view(batch, length, heads, dim), None
