"""The attention network of "Modeling the Evolution Dynamics to Enhance Micro-Expression
Recognition": one token per frame, a learned CLS token and positional embedding, pre-norm
Transformer layers, classification from the CLS token.

Imports neither Ray nor MLflow. Models are created by name (`create_model`) with one
constructor shape: ``(config: ModelConfig, token_dim: int, num_classes: int)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """The paper's values are the defaults."""

    name: str = "evolution_transformer"
    dim: int = 64  # token width after Linear + LayerNorm
    depth: int = 5  # Transformer layers
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 64
    dropout: float = 0.0
    # learned positions: the longest clip the table covers (CLS excluded); 0 = the store's
    # longest clip, resolved when the experiment's store is opened (trainables.data.fit_to_store)
    max_frames: int = 0
    # "learned" (the paper's): frame k of every clip adds table entry k, so one entry means a
    # different phase of the expression in clips of different lengths. "normalized_time": frame
    # k of a T-frame clip sits at k / (T - 1) on a table of `time_points` entries spanning the
    # clip, linearly interpolated, so an entry means the same phase at every length.
    positions: str = "learned"
    time_points: int = 16  # normalized_time: entries of its table (any clip length fits)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.out = nn.Linear(heads * dim_head, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
        """``cls_only``: only the first token (CLS) queries, every token is still a key and a
        value: ``[B, 1, dim]``, the CLS row of the full output (what the last layer needs)."""
        b, t, _ = x.shape
        h, inner = self.norm(x), self.heads * self.dim_head
        if cls_only:
            w = self.qkv.weight
            q = F.linear(h[:, :1], w[:inner]).view(b, 1, self.heads, self.dim_head).transpose(1, 2)
            k, v = F.linear(h, w[inner:]).view(b, t, 2, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(h).view(b, t, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, q.shape[2], inner))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EvolutionTransformer(nn.Module):
    """Input: per-frame token features ``[B, T, token_dim]`` and a boolean mask ``[B, T]``
    (True = real frame). Output: class logits ``[B, num_classes]``.

    Padded positions are excluded as attention keys, and every operation is per token
    otherwise, so padding never changes the output of a clip.
    """

    def __init__(self, config: ModelConfig, token_dim: int, num_classes: int):
        super().__init__()
        self.config = config
        self.embed = nn.Sequential(nn.Linear(token_dim, config.dim), nn.LayerNorm(config.dim))
        self.cls = nn.Parameter(torch.randn(1, 1, config.dim))
        if config.positions not in POSITIONS:
            raise ValueError(f"model.positions: expected one of {POSITIONS}, got {config.positions!r}")
        if config.positions == "learned" and config.max_frames < 1:
            raise ValueError(f"model.max_frames={config.max_frames}: learned positions need the longest clip "
                             f"they cover (0 = the store's longest, resolved by trainables.data.fit_to_store "
                             f"before the model is built)")
        if config.positions == "normalized_time" and config.time_points < 2:
            raise ValueError(f"model.time_points={config.time_points}: normalized_time needs at least 2")
        self.layers = nn.ModuleList(
            nn.ModuleList([
                Attention(config.dim, config.heads, config.dim_head, config.dropout),
                FeedForward(config.dim, config.mlp_dim, config.dropout),
            ])
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, num_classes)
        # created last, so no other parameter's initialisation depends on the table's size
        # (which comes from the store), and its first rows are the same whatever its size
        rows = config.max_frames if config.positions == "learned" else config.time_points
        self.pos = nn.Parameter(torch.randn(1, rows + 1, config.dim))  # entry 0: the CLS token's

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, every_token: bool = False) -> torch.Tensor:
        """``every_token``: the last layer over every token too, as the model ran before its
        shortcut (the same function, about 12 % more arithmetic): the reference the shortcut
        is tested against (tests/trainables/test_model.py) and benchmarked by."""
        b, t, _ = tokens.shape
        x = torch.cat([self.cls.expand(b, -1, -1), self.embed(tokens)], dim=1)
        x = x + self._positions(t, mask)
        keep = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # CLS is always a key
        attn_mask = keep[:, None, None, :]  # [B, 1, 1, T+1], broadcast over heads and queries
        for i, (attn, ff) in enumerate(self.layers):
            if i == len(self.layers) - 1 and not every_token:
                # only the CLS token's output is read: in the last layer it alone queries (every
                # token is still a key and a value), and only its row goes on (exact: the other
                # rows' outputs reach nothing; 12 % of the model's arithmetic at 32 tokens)
                x = x[:, :1] + attn(x, attn_mask, cls_only=True)
            else:
                x = x + attn(x, attn_mask)
            x = x + ff(x)
        return self.head(self.norm(x[:, 0]))

    def _positions(self, t: int, mask: torch.Tensor) -> torch.Tensor:
        """Positional embeddings of the CLS token and ``t`` frames: ``[1 or B, t + 1, dim]``."""
        if self.config.positions == "learned":
            if t > self.config.max_frames:
                raise ValueError(f"clip of {t} frames exceeds the model's max_frames={self.config.max_frames}")
            return self.pos[:, : t + 1]
        # normalized_time: each clip by its own length (the mask's), so padding changes nothing
        table = self.pos[0, 1:]  # [P, dim]
        length = mask.sum(dim=1, keepdim=True).clamp(min=2)  # [B, 1]; a 1-frame clip sits at 0
        at = torch.arange(t, device=mask.device)[None, :] / (length - 1) * (table.shape[0] - 1)
        at = at.clamp(max=table.shape[0] - 1)  # padded frames: anything inside the table
        lo = at.floor().long().clamp(max=table.shape[0] - 2)
        w = (at - lo)[..., None].to(table.dtype)
        frames = table[lo] * (1 - w) + table[lo + 1] * w  # [B, t, dim]
        return torch.cat([self.pos[:, :1].expand(mask.shape[0], -1, -1), frames], dim=1)


POSITIONS = ("learned", "normalized_time")
MODELS = {"evolution_transformer": EvolutionTransformer}


def create_model(config: ModelConfig, token_dim: int, num_classes: int) -> nn.Module:
    """timm-style construction by name: ``config.name`` picks the class."""
    try:
        cls = MODELS[config.name]
    except KeyError:
        raise ValueError(
            f"model.name: unknown model {config.name!r}; known: {sorted(MODELS)}"
        ) from None
    return cls(config, token_dim, num_classes)
