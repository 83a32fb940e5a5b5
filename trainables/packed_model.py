"""K copies of the paper's model trained as one: every weight of ``EvolutionTransformer``
gains a leading seed axis, and one forward pass runs all K members on their own batches.

Why not ``torch.func.vmap``: scaled-dot-product attention has no batching rule and falls
back to a loop over members, which ran at 0.47x of separate training for 30 seeds. Here the
members' matmuls are batched matmuls (``baddbmm`` over ``[K, B·T, in]``) and attention runs
once over ``[K·heads·B, T, dim_head]`` (``attention``: by hand, head-major from projection
to output, so no tensor of the size of q, k, v is ever permuted and copied): the same
arithmetic as K solo models, in larger kernels. ``forward(params, ...)`` runs any slice of
the members (``packed_fit.packed_step`` trains them one at a time on CPU).

The members stay what they are: ``PackedModel.from_members`` stacks K solo models (each
initialised from its own seed), ``member_state(k)`` gives member k back as a solo
``state_dict``, and the forward pass computes the solo forward's function, layer by
layer, so a member's outputs equal the ``nn.Module``'s up to float summation order (a solo
trial trains as a pack of one: ``packed_fit.solo_fitter``). Imports
neither Ray nor MLflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.model import EvolutionTransformer, ModelConfig


class PackedModel:
    """The stacked parameters (``params[name]``: ``[K, *solo shape]``, leaf tensors) and the
    packed forward pass. ``names`` keep the solo ``state_dict``'s order."""

    def __init__(self, config: ModelConfig, params: dict[str, torch.Tensor]):
        if config.dropout:
            raise ValueError(f"model.dropout={config.dropout}: packed seeds need dropout 0 (each member's "
                             f"dropout masks would have to follow its solo random stream)")
        self.config = config
        self.params = params
        self.names = list(params)
        self.k = int(next(iter(params.values())).shape[0])

    @classmethod
    def from_members(cls, members: list[EvolutionTransformer]) -> "PackedModel":
        if not members:
            raise ValueError("a pack needs at least one member")
        states = [m.state_dict() for m in members]
        params = {name: torch.stack([s[name].detach() for s in states]).clone().requires_grad_(True)
                  for name in states[0]}
        return cls(members[0].config, params)

    def parameters(self) -> list[torch.Tensor]:
        return [self.params[n] for n in self.names]

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s parameters as its solo model's ``state_dict`` (copies)."""
        return {n: self.params[n][k].detach().clone() for n in self.names}

    def load_member(self, k: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n in self.names:
                self.params[n][k].copy_(state[n])

    def member_model(self, k: int, token_dim: int, num_classes: int) -> EvolutionTransformer:
        """Member ``k`` as a solo model (for evaluation and saving)."""
        model = EvolutionTransformer(self.config, token_dim, num_classes)
        model.load_state_dict(self.member_state(k))
        return model.to(self.params[self.names[0]].device)

    # -- the forward pass: EvolutionTransformer.forward with a leading member axis --------
    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``tokens [K, B, T, D]``, ``mask [K, B, T]`` (True = real frame) -> logits ``[K, B, C]``."""
        return self.forward(self.params, tokens, mask)

    def forward(self, params: dict[str, torch.Tensor], tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward pass with the given stacked parameters (``self.params``, or any
        ``[k, ...]`` slice of them: a chunk of the members) for as many members."""
        p, c = params, self.config
        k, b, t, _ = tokens.shape
        x = _layer_norm(_linear(tokens, p["embed.0.weight"], p["embed.0.bias"]), p["embed.1.weight"], p["embed.1.bias"])
        x = torch.cat([p["cls"].expand(k, b, 1, c.dim), x], dim=2)  # cls [K, 1, 1, dim]
        x = x + self._positions(p["pos"], t, mask)
        keep = torch.cat([mask.new_ones(k, b, 1), mask], dim=2)  # CLS is always a key
        by_hand = tokens.device.type in HAND_ATTENTION_DEVICES
        bias = attention_bias(keep, c.heads, x.dtype) if by_hand else keep.reshape(k * b, 1, 1, t + 1)
        for i in range(c.depth):
            a = f"layers.{i}.0."
            # the last layer: only the CLS token queries and goes on (EvolutionTransformer.forward)
            tq = 1 if i == c.depth - 1 else t + 1
            h = _layer_norm(x, p[a + "norm.weight"], p[a + "norm.bias"])
            if by_hand:
                y = attention(h.view(k, b * (t + 1), c.dim), p[a + "qkv.weight"], p[a + "out.weight"],
                              p[a + "out.bias"], bias[:, :tq], b, c.heads, c.dim_head,
                              cls_only=tq == 1).view(k, b, tq, c.dim)
            else:  # SDPA over [K*B, heads, T, d]: a few large kernels, no per-member launches
                inner = c.heads * c.dim_head
                w = p[a + "qkv.weight"]
                q = _linear(h[:, :, :tq], w[:, :inner], None).view(k * b, tq, c.heads, c.dim_head).transpose(1, 2)
                kk, v = _linear(h, w[:, inner:], None).view(k * b, t + 1, 2, c.heads, c.dim_head).permute(2, 0, 3, 1, 4)
                y = F.scaled_dot_product_attention(q, kk, v, attn_mask=bias)
                y = _linear(y.transpose(1, 2).reshape(k, b, tq, -1), p[a + "out.weight"], p[a + "out.bias"])
            x = x[:, :, :tq] + y
            f = f"layers.{i}.1.net."
            h = _layer_norm(x, p[f + "0.weight"], p[f + "0.bias"])
            h = F.gelu(_linear(h, p[f + "1.weight"], p[f + "1.bias"]))
            x = x + _linear(h, p[f + "4.weight"], p[f + "4.bias"])
        cls = _layer_norm(x[:, :, 0], p["norm.weight"], p["norm.bias"])  # [K, B, dim]
        return _linear(cls, p["head.weight"], p["head.bias"])

    def _positions(self, pos: torch.Tensor, t: int, mask: torch.Tensor) -> torch.Tensor:
        """``pos``: ``[K, 1, rows + 1, dim]``."""
        c = self.config
        if c.positions == "learned":
            if t > c.max_frames:
                raise ValueError(f"clip of {t} frames exceeds the model's max_frames={c.max_frames}")
            return pos[:, :, : t + 1]
        k, b, _ = mask.shape
        table = pos[:, 0, 1:]  # [K, P, dim]
        rows = table.shape[1]
        length = mask.sum(dim=2, keepdim=True).clamp(min=2)  # [K, B, 1]
        at = (torch.arange(t, device=mask.device)[None, None, :] / (length - 1) * (rows - 1)).clamp(max=rows - 1)
        lo = at.floor().long().clamp(max=rows - 2)
        w = (at - lo)[..., None].to(table.dtype)
        gather = lambda idx: torch.gather(table, 1, idx.reshape(k, -1, 1).expand(-1, -1, c.dim)).view(k, b, t, c.dim)  # noqa: E731
        frames = gather(lo) * (1 - w) + gather(lo + 1) * w
        return torch.cat([pos[:, :, :1].expand(k, b, 1, c.dim), frames], dim=2)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per member ``x[k] @ weight[k].T + bias[k]``: ``x [K, ..., in]``, ``weight [K, out, in]``."""
    k, out = weight.shape[0], weight.shape[1]
    flat = x.reshape(k, -1, x.shape[-1])
    wt = weight.transpose(1, 2)
    y = torch.bmm(flat, wt) if bias is None else torch.baddbmm(bias[:, None, :], flat, wt)
    return y.view(*x.shape[:-1], out)


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per member LayerNorm over the last axis (``weight``, ``bias``: ``[K, dim]``)."""
    if weight.shape[0] == 1:  # one member (a chunk of one): the fused affine kernel, forward and backward
        return F.layer_norm(x, x.shape[-1:], weight[0], bias[0])
    shape = (weight.shape[0],) + (1,) * (x.dim() - 2) + (weight.shape[1],)
    return F.layer_norm(x, x.shape[-1:]) * weight.view(shape) + bias.view(shape)


# Devices whose packed forward uses ``attention`` (by hand, head-major): on CPU it is ~1.5x
# faster than SDPA at these sizes (bench/train_throughput.py). Elsewhere SDPA: ``attention``
# loops over members for its projections, K launches each, which a launch-bound GPU pays for.
HAND_ATTENTION_DEVICES = ("cpu",)


def attention_bias(keep: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """The key mask ``keep [K, B, T]`` (True = a key) as the additive bias ``attention``
    takes: ``[K * heads * B, T, T]`` (members, heads, clips), 0 for keys, -inf for padding
    (what SDPA's boolean mask does). Built once per forward pass, shared by every layer."""
    k, b, t = keep.shape
    bias = torch.zeros(k, b, t, dtype=dtype, device=keep.device).masked_fill_(~keep, float("-inf"))
    return bias[:, None, :, None, :].expand(k, heads, b, t, t).reshape(k * heads * b, t, t)


def attention(h: torch.Tensor, qkv_weight: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor,
              bias: torch.Tensor, clips: int, heads: int, dim_head: int, cls_only: bool = False) -> torch.Tensor:
    """One layer's attention, per member, without its norm and residual: ``h [K, B*T, dim]``
    (normed tokens), the solo layer's ``qkv.weight [K, 3*heads*dim_head, dim]`` (no bias),
    ``out.weight [K, dim, heads*dim_head]`` and ``out.bias [K, dim]``, ``bias`` from
    ``attention_bias`` (its first query row for ``cls_only``) -> ``[K, B*T, dim]``:
    out(softmax(q k^T / sqrt(d) + bias) v), as the solo ``Attention``
    (``F.scaled_dot_product_attention`` with a boolean key mask) computes it.
    ``cls_only``: only each clip's first token (CLS) queries, every token is still a key and
    a value -> ``[K, B, dim]``, the CLS rows of the full output (the last layer's)."""
    return _Attention.apply(h, qkv_weight, out_weight, out_bias, bias, clips, heads, dim_head, cls_only)


class _Attention(torch.autograd.Function):
    """Forward and backward by hand, in batched matmuls over ``[K*heads*B, T, dim_head]``.
    Every tensor of the size of q, k, v or the heads' output stays head-major: q, k and v
    are projected straight into that layout (per member and part, a batched matmul over
    heads of the member's tokens, broadcast, by its ``[heads, dim_head, dim]`` weights), and
    the output projection sums the heads' products. So none of them or their gradients is
    permuted and copied: at T ~ 32 those copies, and the CPU flash kernel's buffers, cost
    about what the matmuls do. Only weight-sized tensors are transposed."""

    @staticmethod
    def forward(ctx, h, qkv_weight, out_weight, out_bias, bias, clips, heads, dim_head, cls_only):
        k, bt, dim = h.shape
        hq = h.view(k, clips, bt // clips, dim)[:, :, 0].contiguous() if cls_only else h  # the queries
        bq = hq.shape[1]
        t, tq, n = bt // clips, bq // clips, k * heads * clips
        wqkv = qkv_weight.view(k, 3, heads, dim_head, dim)
        wout = out_weight.view(k, dim, heads, dim_head)
        qm = h.new_empty(k, heads, bq, dim_head)  # q: [member, head, clip * query, d]
        kvm = h.new_empty(2, k, heads, bt, dim_head)  # k, v: [part, member, head, clip * frame, d]
        for m in range(k):
            torch.bmm(hq[m].expand(heads, bq, dim), wqkv[m, 0].transpose(1, 2), out=qm[m])
            x = h[m].expand(heads, bt, dim)
            for part in (1, 2):
                torch.bmm(x, wqkv[m, part].transpose(1, 2), out=kvm[part - 1, m])
        q, kk, v = qm.view(n, tq, dim_head), kvm[0].view(n, t, dim_head), kvm[1].view(n, t, dim_head)
        scale = dim_head ** -0.5
        p = torch.softmax(torch.baddbmm(bias, q, kk.transpose(1, 2), alpha=scale), dim=-1)
        y = torch.bmm(p, v).view(k, heads, bq, dim_head)
        out = hq.new_empty(k, bq, dim)
        for m in range(k):  # sum over heads of y_h @ out_h^T, + out.bias
            torch.sum(torch.bmm(y[m], wout[m].permute(1, 2, 0)), dim=0, out=out[m])
        out += out_bias[:, None, :]
        ctx.save_for_backward(hq, h, qkv_weight, out_weight, qm, kvm, p, y)
        ctx.dims = (clips, heads, dim_head, scale, cls_only)
        return out

    @staticmethod
    def backward(ctx, grad):
        hq, h, qkv_weight, out_weight, qm, kvm, p, y = ctx.saved_tensors
        clips, heads, dim_head, scale, cls_only = ctx.dims
        k, bt, dim = h.shape
        bq = hq.shape[1]
        t, tq, n = bt // clips, bq // clips, k * heads * clips
        grad = grad.contiguous()
        wout = out_weight.view(k, dim, heads, dim_head)
        g_out_bias = grad.sum(dim=1)
        g_out_weight = torch.empty_like(out_weight)
        gy = torch.empty_like(y)  # [K, heads, B*Tq, d]
        for m in range(k):
            g = grad[m].expand(heads, bq, dim)
            torch.bmm(g, wout[m].permute(1, 0, 2), out=gy[m])
            g_out_weight[m].view(dim, heads, dim_head).copy_(torch.bmm(g.transpose(1, 2), y[m]).transpose(0, 1))
        q, kk, v = qm.view(n, tq, dim_head), kvm[0].view(n, t, dim_head), kvm[1].view(n, t, dim_head)
        gy = gy.view(n, tq, dim_head)
        dq, dkv = torch.empty_like(qm), torch.empty_like(kvm)
        gp = torch.bmm(gy, v.transpose(1, 2))
        torch.bmm(p.transpose(1, 2), gy, out=dkv[1].view(n, t, dim_head))
        ds = torch._softmax_backward_data(gp, p, -1, p.dtype)
        torch.baddbmm(dq.view(n, tq, dim_head), ds, kk, beta=0, alpha=scale, out=dq.view(n, tq, dim_head))
        torch.baddbmm(dkv[0].view(n, t, dim_head), ds.transpose(1, 2), q, beta=0, alpha=scale,
                      out=dkv[0].view(n, t, dim_head))
        wqkv = qkv_weight.view(k, 3, heads, dim_head, dim)
        g_qkv_weight = torch.empty_like(qkv_weight).view(k, 3, heads, dim_head, dim)
        gh = torch.empty_like(h)
        for m in range(k):
            torch.bmm(dq[m].transpose(1, 2), hq[m].expand(heads, bq, dim), out=g_qkv_weight[m, 0])
            x = h[m].expand(heads, bt, dim)
            for part in (1, 2):
                torch.bmm(dkv[part - 1, m].transpose(1, 2), x, out=g_qkv_weight[m, part])
            if cls_only:  # k and v from every token, q from the CLS rows only
                acc = torch.bmm(dkv[0, m], wqkv[m, 1])
            else:  # [heads, bt, dim], summed over parts then heads
                acc = torch.bmm(dq[m], wqkv[m, 0])
                acc.baddbmm_(dkv[0, m], wqkv[m, 1])
            acc.baddbmm_(dkv[1, m], wqkv[m, 2])
            torch.sum(acc, dim=0, out=gh[m])
            if cls_only:
                gh[m].view(clips, t, dim)[:, 0] += torch.bmm(dq[m], wqkv[m, 0]).sum(dim=0)
        return gh, g_qkv_weight.view_as(qkv_weight), g_out_weight, g_out_bias, None, None, None, None, None
