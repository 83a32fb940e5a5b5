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
    max_frames: int = 256  # positional embeddings available (CLS excluded)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.out = nn.Linear(heads * dim_head, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, t, self.heads * self.dim_head))


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
        self.pos = nn.Parameter(torch.randn(1, config.max_frames + 1, config.dim))
        self.layers = nn.ModuleList(
            nn.ModuleList([
                Attention(config.dim, config.heads, config.dim_head, config.dropout),
                FeedForward(config.dim, config.mlp_dim, config.dropout),
            ])
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, num_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = tokens.shape
        if t > self.config.max_frames:
            raise ValueError(
                f"clip of {t} frames exceeds the model's max_frames={self.config.max_frames}"
            )
        x = torch.cat([self.cls.expand(b, -1, -1), self.embed(tokens)], dim=1)
        x = x + self.pos[:, : t + 1]
        keep = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # CLS is always a key
        attn_mask = keep[:, None, None, :]  # [B, 1, 1, T+1], broadcast over heads and queries
        for attn, ff in self.layers:
            x = x + attn(x, attn_mask)
            x = x + ff(x)
        return self.head(self.norm(x[:, 0]))


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
