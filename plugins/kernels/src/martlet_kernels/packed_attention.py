"""Attention inside packed rows, computed segment by segment.

A packed row (``--packing``, ``--padding-free``) holds several encoded rows one after another;
each may attend only to itself. A 4D block-diagonal mask gets that right with any attention
kernel, but the kernel still computes every query against every key of the whole packed row and
throws most of it away: for four 512-token rows of ~60-token segments that was 29% of a
training step on a CPU (``bench/RESULTS.md``), for attention work that, done segment by
segment, is about a tenth of it.

:func:`packed_attention` is registered with transformers' ``AttentionInterface`` as
``"martlet_packed"``. It finds the segments from ``position_ids`` (each restarts at 0), sorts
them into a few buckets of similar length and runs causal attention on each bucket (one padded
batch of segments): the work is close to the sum of the segments' own squares instead of the
packed row's. Grouped-query heads share their key and value rows without copies (the queries
of a group are stacked along the length). One row gather each moves the queries, keys and
values of all buckets into that layout and one moves the outputs back; their backward passes
are gathers too, not scatter-adds into zeroed tensors. The segment plan and its row indices
are computed once per batch and reused by every layer. A float32 bucket is one call of
PyTorch's fused causal attention (which keeps only the output and the row statistics for the
backward pass: memory linear in the segment length, where the scores of explicit products are
quadratic); other dtypes use the explicit products (``baddbmm`` with a causal bias, softmax,
``bmm``).

:func:`use_packed_attention` switches a model whose attention goes through transformers'
interface (``eager`` or ``sdpa``) to it; models with ``flash_attention_2`` (which reads packed
``position_ids`` itself) or their own attention keep the 4D mask. Without ``position_ids`` it
computes ordinary causal attention over each whole row, and a query shorter than its keys
(decoding with a cache) goes to transformers' sdpa. The ``packed-attention`` kernel offers
:func:`switched` as the ``segment_attention`` operation (:data:`martlet.kernels.OPS`): the
training job switches the model only while its batches are packed, since padded batches need
their mask.

transformers is imported when a function is called (this module is imported only by a
training run, which has torch loaded already).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

NAME = "martlet_packed"
# a bucket takes segments down to 1/RATIO of its longest: few buckets, little padding
RATIO = 1.3
SWITCHABLE = ("eager", "sdpa")
#: dtypes whose buckets go through PyTorch's fused attention (its CPU flash kernel: no
#: ``L x L`` probabilities kept for the backward pass, and faster than the products below in
#: float32); bfloat16 buckets use the explicit products, several times faster on a CPU with
#: bf16 matrix units (``bench/RESULTS.md``)
FUSED_DTYPES = (torch.float32,)

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


def switchable(model: Any) -> bool:
    """Whether :func:`use_packed_attention` can switch ``model``: its attention goes through
    transformers' interface (``eager`` or ``sdpa``)."""
    base = _base(model)
    config = getattr(base, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in SWITCHABLE:
        return False
    return bool(getattr(base, "_supports_attention_backend", False))


def use_packed_attention(model: Any) -> bool:
    """Switch ``model`` (a transformers model, or a wrapper with ``get_base_model``) to
    segment-by-segment attention for packed rows; returns whether it was switched."""
    if not switchable(model):
        return False
    register()
    _base(model).set_attn_implementation(NAME)
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


class SegmentPlan:
    """The segments of a ``[batch, length]`` ``position_ids`` tensor, gathered into buckets.

    ``buckets`` lists ``(count, longest, starts, lengths)``: ``count`` segments of at most
    ``longest`` positions, the flattened (``row * length + position``) index of each segment's
    first position and each segment's length. A bucket takes segments down to 1/``RATIO`` of
    its longest. :meth:`indices` turns the plan into the row indices that move queries, keys,
    values and outputs between transformers' layout and the buckets' (one gather each)."""

    def __init__(self, position_ids: Any) -> None:
        self.shape = tuple(position_ids.shape)
        self.device = position_ids.device
        batch, length = self.shape
        starts = (position_ids == 0).clone()
        starts[:, 0] = True
        flat_starts = starts.reshape(-1).nonzero().flatten().tolist()
        # a segment never spans two rows: every row starts one
        ends = flat_starts[1:] + [batch * length]
        segments = sorted(zip(flat_starts, ends, strict=True), key=lambda s: (s[0] - s[1], s[0]))
        self.buckets: list[tuple[int, int, Any, Any]] = []
        i = 0
        while i < len(segments):
            longest = segments[i][1] - segments[i][0]
            j = i
            while j < len(segments) and (segments[j][1] - segments[j][0]) * RATIO >= longest:
                j += 1
            members = segments[i:j]
            self.buckets.append(
                (
                    len(members),
                    longest,
                    torch.tensor([s for s, _ in members]),
                    torch.tensor([e - s for s, e in members]),
                )
            )
            i = j
        self._indices: dict[tuple[int, int], _Indices] = {}

    def indices(self, heads: int, kv_heads: int) -> _Indices:
        """The gathers for ``heads`` query and ``kv_heads`` key-value heads (computed once)."""
        key = (heads, kv_heads)
        if key not in self._indices:
            self._indices[key] = _Indices(self, heads, kv_heads)
        return self._indices[key]


class _Indices:
    """Row indices between transformers' layout — queries as ``[batch * length * heads, dim]``
    rows, keys and values as ``[batch * length * kv_heads, dim]`` — and the buckets' — for each
    bucket, ``count * kv_heads`` batch entries of ``group * longest`` query rows (the ``group``
    query heads of a key-value head stacked along the length, as transformers' ``repeat_kv``
    pairs them) and ``longest`` key rows, all buckets one after another.

    A segment shorter than its bucket is padded by repeating its last position; the padded
    rows are never attended to (causal mask) and their outputs are dropped, so their gradients
    are exactly zero and each backward gather reads only the real rows."""

    def __init__(self, plan: SegmentPlan, heads: int, kv_heads: int) -> None:
        group = heads // kv_heads
        kv = torch.arange(kv_heads)
        head = kv[:, None] * group + torch.arange(group)  # [kv, group]: query heads by group
        query_rows, key_rows, query_real, key_real = [], [], [], []
        self.sizes: list[tuple[int, int]] = []  # (count, longest) per bucket
        for count, longest, starts, lengths in plan.buckets:
            steps = torch.arange(longest)
            # [count, longest]: the flattened position of each bucket slot (padding repeats
            # the last one) and whether it is a real position
            positions = starts[:, None] + torch.minimum(steps, lengths[:, None] - 1)
            real = steps < lengths[:, None]
            # slots ordered [count, kv, group, longest] and [count, kv, longest]
            query_rows.append(positions[:, None, None, :] * heads + head[None, :, :, None])
            key_rows.append(positions[:, None, :] * kv_heads + kv[None, :, None])
            query_real.append(real[:, None, None, :].expand(count, kv_heads, group, longest))
            key_real.append(real[:, None, :].expand(count, kv_heads, longest))
            self.sizes.append((count, longest))
        query = torch.cat([r.reshape(-1) for r in query_rows])
        keys = torch.cat([r.reshape(-1) for r in key_rows])
        real = torch.cat([r.reshape(-1) for r in query_real])
        real_keys = torch.cat([r.reshape(-1) for r in key_real])
        batch, length = plan.shape
        slots = torch.arange(query.numel())
        # the bucket slot holding each (position, head) row: outputs go back through it, and
        # a query row's gradient comes from it
        query_back = torch.empty(batch * length * heads, dtype=torch.long)
        query_back[query[real]] = slots[real]
        key_back = torch.empty(batch * length * kv_heads, dtype=torch.long)
        key_back[keys[real_keys]] = torch.arange(keys.numel())[real_keys]
        device = plan.device
        self.query = query.to(device)
        self.query_back = query_back.to(device)
        self.keys = keys.to(device)
        self.key_back = key_back.to(device)
        self.padding = (~real).nonzero().flatten().to(device)  # the padded query slots


def segment_plan(position_ids: Any) -> SegmentPlan:
    """The :class:`SegmentPlan` of ``position_ids`` (``[batch, length]``, restarting at 0 at
    each segment). Computed once per distinct ``position_ids``: every layer of a forward pass
    reuses it."""
    cached = _plan_cache.get("plan")
    if (
        cached is not None
        and cached[0].shape == position_ids.shape
        and cached[0].device == position_ids.device
        and torch.equal(cached[0], position_ids)
    ):
        return cached[1]
    plan = SegmentPlan(position_ids)
    _plan_cache["plan"] = (position_ids.clone(), plan)
    _causal_cache.clear()
    return plan


def _causal_bias(length: int, group: int, dtype: Any, device: Any) -> Any:
    """``[group * length, length]`` additive mask: -inf above the diagonal of each of
    ``group`` stacked causal blocks (the positions a query may not see), 0 elsewhere."""
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


class GatherRows(torch.autograd.Function):
    """``GatherRows.apply(x, index, back, padding)``: ``x[index]`` whose backward pass is a
    gather as well — ``grad[back]``, with the ``padding`` rows zeroed — instead of a
    scatter-add into zeros: every row of ``x`` has one real slot in ``index`` (others repeat
    rows whose gradients are zero)."""

    @staticmethod
    def forward(ctx, x, index, back, padding):  # noqa: D102
        ctx.save_for_backward(back, padding)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        back, padding = ctx.saved_tensors
        out = grad.index_select(0, back)
        if padding is not None:
            out.index_fill_(0, padding, 0)
        return out, None, None, None


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
    each segment of ``position_ids`` (each whole row when there are none).

    The query, key and value rows of every bucket are gathered in one ``index_select`` each;
    each bucket's scores are scaled and masked in the product (``baddbmm``), the softmax runs
    in the inputs' dtype (PyTorch accumulates reduced-precision softmax in fp32), and one more
    gather puts the outputs back in place."""
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if scaling is None:
        scaling = dim**-0.5
    if key.shape[2] != length:  # decoding with a cache: a query against all earlier keys
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling
        )
    if position_ids is None or tuple(position_ids.shape) != (batch, length):
        # one causal segment per row
        position_ids = torch.arange(length, device=query.device).expand(batch, length)
    index = segment_plan(position_ids).indices(heads, kv_heads)
    gather = GatherRows.apply
    group = heads // kv_heads
    # [B * L * H, D] rows: free views of the [B, L, H, D] tensors transformers transposed
    q = gather(query.transpose(1, 2).reshape(-1, dim), index.query, index.query_back, None)
    k = gather(key.transpose(1, 2).reshape(-1, dim), index.keys, index.key_back, None)
    v = gather(value.transpose(1, 2).reshape(-1, dim), index.keys, index.key_back, None)
    training = bool(getattr(module, "training", False))
    fused = query.dtype in FUSED_DTYPES
    outputs = []
    # split, not sliced: the backward pass concatenates the buckets' gradients in one go
    q_parts = q.split([count * kv_heads * group * longest for count, longest in index.sizes])
    k_parts = k.split([count * kv_heads * longest for count, longest in index.sizes])
    v_parts = v.split([count * kv_heads * longest for count, longest in index.sizes])
    for (count, longest), queries, keys, values in zip(
        index.sizes, q_parts, k_parts, v_parts, strict=True
    ):
        entries = count * kv_heads
        if fused:
            # [entries, group, L, D] queries against one key and value head each
            out = torch.nn.functional.scaled_dot_product_attention(
                queries.view(entries, group, longest, dim),
                keys.view(entries, 1, longest, dim),
                values.view(entries, 1, longest, dim),
                dropout_p=dropout if training else 0.0,
                is_causal=True,
                scale=scaling,
                enable_gqa=True,
            )
            outputs.append(out.view(-1, dim))
            continue
        queries = queries.view(entries, group * longest, dim)
        keys = keys.view(entries, longest, dim)
        values = values.view(entries, longest, dim)
        bias = _causal_bias(longest, group, query.dtype, query.device)
        scores = torch.baddbmm(
            bias.expand(entries, -1, -1), queries, keys.transpose(1, 2), alpha=scaling
        )
        probs = torch.softmax(scores, dim=-1)
        if dropout > 0.0 and training:
            probs = torch.nn.functional.dropout(probs, p=dropout)
        outputs.append(torch.bmm(probs, values).view(-1, dim))
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    out = gather(out, index.query_back, index.query, index.padding)
    return out.view(batch, length, heads, dim), None
