"""Mapping networks: one image embedding -> K prefix embeddings of the decoder's width.

Both follow ClipCap (Mokady et al., 2021, "ClipCap: CLIP Prefix for Image Captioning"):
- `MLPMapper`: Linear -> Tanh -> Linear, hidden size (embed_dim + K * n_embd) // 2 by default; with
  hidden_size=0 it is a single Linear followed by Tanh.
- `TransformerMapper`: the image embedding is projected into `clip_length` tokens; K learned constant
  prefix tokens are appended, a small transformer runs over both, and the outputs at the constant
  tokens are the prefix.
- `GridMapper` (not ClipCap): reads the encoder's patch tokens instead of one pooled embedding, average-pools
  them to a g x g grid (K = g * g prefix embeddings) and projects each cell with LayerNorm -> Linear -> GELU
  -> Linear, as LLaVA's projector does. Objects in different parts of the image reach the decoder in
  different prefix embeddings, so their attributes are not blended into one vector.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ConfigValueError, MapperConfig, grid_side, heads_problem


class MLPMapper(nn.Module):
    def __init__(self, embed_dim: int, n_embd: int, prefix_length: int, hidden_size: int | None = None):
        super().__init__()
        self.prefix_length = prefix_length
        self.n_embd = n_embd
        out = prefix_length * n_embd
        if hidden_size == 0:
            # The single-layer special case: Linear + Tanh (as in the simplest CLIP-GPT2 projects).
            self.net = nn.Sequential(nn.Linear(embed_dim, out), nn.Tanh())
        else:
            hidden = hidden_size if hidden_size is not None else (embed_dim + out) // 2
            self.net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        prefix = self.net(image_embeds)  # (B, K * n_embd)
        return prefix.view(-1, self.prefix_length, self.n_embd)  # (B, K, n_embd)


class TransformerMapper(nn.Module):
    def __init__(self, embed_dim: int, n_embd: int, prefix_length: int, clip_length: int, num_layers: int,
                 num_heads: int):
        super().__init__()
        problem = heads_problem(n_embd, num_heads, "mapper.num_heads")
        if problem:
            raise ConfigValueError(f"transformer mapper: {problem}")
        self.prefix_length = prefix_length
        self.clip_length = clip_length
        self.n_embd = n_embd
        self.project = nn.Linear(embed_dim, clip_length * n_embd)
        # Learned constant queries, one per prefix position (ClipCap's `prefix_const`).
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, n_embd))
        layer = nn.TransformerEncoderLayer(
            d_model=n_embd, nhead=num_heads, dim_feedforward=2 * n_embd, dropout=0.0, activation="relu",
            batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        batch = image_embeds.shape[0]
        clip_tokens = self.project(image_embeds).view(batch, self.clip_length, self.n_embd)  # (B, L, n_embd)
        const = self.prefix_const.unsqueeze(0).expand(batch, -1, -1)  # (B, K, n_embd)
        hidden = self.transformer(torch.cat((clip_tokens, const), dim=1))  # (B, L + K, n_embd)
        return hidden[:, self.clip_length:]  # (B, K, n_embd)


class GridMapper(nn.Module):
    def __init__(self, embed_dim: int, n_embd: int, prefix_length: int):
        super().__init__()
        self.grid = grid_side(prefix_length)
        if self.grid is None:
            raise ConfigValueError(f"grid mapper: prefix_length must be a square (g x g cells), got {prefix_length}")
        self.prefix_length = prefix_length
        self.net = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, n_embd), nn.GELU(),
                                 nn.Linear(n_embd, n_embd))

    def forward(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        batch, n, dim = patch_tokens.shape  # (B, N, D): N = h * w patch tokens, row-major
        side = round(n ** 0.5)
        if side * side != n:
            raise ValueError(f"grid mapper expects a square grid of patch tokens, got {n}")
        if side < self.grid:
            raise ValueError(f"grid mapper: {self.grid}x{self.grid} cells need at least that many patches per side, "
                             f"the encoder gives {side}x{side}")
        grid = patch_tokens.transpose(1, 2).reshape(batch, dim, side, side)  # (B, D, h, w)
        pooled = nn.functional.adaptive_avg_pool2d(grid, self.grid)  # (B, D, g, g)
        return self.net(pooled.flatten(2).transpose(1, 2))  # (B, g * g, n_embd)


def build_mapper(config: MapperConfig, embed_dim: int, n_embd: int, prefix_length: int) -> nn.Module:
    config.validate()
    if config.type == "mlp":
        return MLPMapper(embed_dim, n_embd, prefix_length, config.hidden_size)
    if config.type == "grid":
        return GridMapper(embed_dim, n_embd, prefix_length)
    return TransformerMapper(embed_dim, n_embd, prefix_length, config.clip_length, config.num_layers,
                             config.num_heads)
