"""AttentionTuner: a causal Transformer over interleaved (o_0, a_0, o_1, a_1, ...) tokens.

Follows the released reference (WilliamYue37/AttentionTuner, ltmb/ and memory_gym/transformer.py):
observation CNN -> Linear -> Tanh, one-hot action -> Linear -> Tanh, the same sinusoidal PE(t) added to o_t
and a_t, embedding LayerNorm + dropout, post-LN layers (x = LN(x + MHA(x)); x = LN(x + Dropout(FF(x))) with
FF = Linear-ReLU-Linear, no attention dropout), and the action a_t read at the observation token 2t.

`forward` returns values, never losses: the logits and the softmax probabilities of the supervised heads.
`new_cache` / `step` decode one timestep at a time with a key/value cache for closed-loop evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

# Per-sample observation shapes (uint8, channels last, as the environments emit them).
OBS_SHAPES: dict[str, tuple[int, int, int]] = {"symbolic": (7, 7, 3), "pixels": (84, 84, 3)}
# MiniGrid code ranges: OBJECT_TO_IDX (unseen .. agent), COLOR_TO_IDX, door state (open/closed/locked).
N_OBJECTS, N_COLORS, N_STATES = 11, 6, 3
# Below this many observations a call encodes them all: finding duplicates would cost more than it saves.
DEDUP_MIN = 64


def encode_unique(encoder: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """encoder(obs) for obs (N, ...) uint8, running the encoder once per distinct observation.

    The observation encoder is most of a small model's compute, and the memory tasks repeat their views a lot
    (a batch of Ordering or Mortar Mayhem episodes holds 12-20% distinct frames, padding included), so this
    makes training several times faster. The result is the same function: row i is encoder(obs[i]), and the
    gradient reaching the encoder is the sum over the duplicates, exactly as without deduplication (up to the
    order of float additions).
    """
    n = obs.shape[0]
    if n < DEDUP_MIN:
        return encoder(obs)
    uniq, inverse = torch.unique(obs.reshape(n, -1), dim=0, return_inverse=True)
    if uniq.shape[0] > 0.8 * n:
        return encoder(obs)
    return encoder(uniq.view(-1, *obs.shape[1:]))[inverse]


def sinusoid(pos: torch.Tensor, d: int) -> torch.Tensor:
    """Sinusoidal encoding of float positions (n,) -> (n, d), as the reference; defined for any position."""
    div = torch.exp(torch.arange(0, d, 2, device=pos.device, dtype=torch.float32) * (-math.log(10000.0) / d))
    ang = pos.float()[:, None] * div[None, :]  # (n, d/2)
    # interleave sin (even channels) and cos (odd channels) without an in-place write
    return torch.stack((ang.sin(), ang.cos()), dim=-1).flatten(1)  # (n, d)


class SymbolicEncoder(nn.Module):
    """(N, 7, 7, 3) uint8 MiniGrid codes -> one-hot 11 + 6 + 3 = 20 channels -> 2 convs -> Linear -> Tanh.

    Codes outside MiniGrid's ranges are clamped into range (the last object/colour/state), so a corrupt
    observation cannot index out of bounds; the encoders of memory_tasks never emit such codes.
    """

    hi: torch.Tensor
    offset: torch.Tensor

    def __init__(self, d_model: int):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(N_OBJECTS + N_COLORS + N_STATES, 40, 3, padding=1), nn.ReLU(),
            nn.Conv2d(40, 80, 3, padding=1), nn.ReLU(),
        )
        self.fc = nn.Linear(80 * 7 * 7, d_model)  # 3920
        hi = torch.tensor([N_OBJECTS - 1, N_COLORS - 1, N_STATES - 1])
        self.register_buffer("hi", hi.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("offset", torch.tensor([0, N_OBJECTS, N_OBJECTS + N_COLORS]).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        idx = obs.permute(0, 3, 1, 2).long()  # (N, 3, 7, 7): channel-first like the reference
        idx = torch.minimum(idx, self.hi) + self.offset  # disjoint channel ranges for object/colour/state
        x = torch.zeros(obs.shape[0], 20, 7, 7, device=obs.device).scatter_(1, idx, 1.0)  # (N, 20, 7, 7)
        return torch.tanh(self.fc(self.cnn(x).flatten(1)))  # (N, d)


class PixelEncoder(nn.Module):
    """(N, 84, 84, 3) uint8 RGB -> /255 -> Nature-DQN CNN -> Linear(3136, d) -> Tanh."""

    def __init__(self, d_model: int):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        )
        self.fc = nn.Linear(64 * 7 * 7, d_model)  # 3136

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, 84, 84); uint8 cannot be out of range
        return torch.tanh(self.fc(self.cnn(x).flatten(1)))  # (N, d)


class KVCache:
    """Per-layer keys and values of the tokens decoded so far, in buffers that double when full.

    All rows of the batch share one length (environments are stepped in lockstep); rows whose episode has
    ended can be dropped with `select`. Buffers are allocated at the first step, in the dtype the model
    produces (so autocast gives half-precision caches).
    """

    def __init__(self, n_layers: int, batch_size: int, device: torch.device | str, capacity: int = 128):
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.capacity = capacity
        self.length = 0  # tokens cached (2t - 1 after t steps, t >= 1)
        self.t = 0  # timesteps decoded

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' k, v (B, nh, n, hs) after the cached ones; return views of all of them."""
        end = self.length + k.shape[2]
        buf_k, buf_v = self.k[layer], self.v[layer]
        if buf_k is None or buf_v is None or buf_k.shape[2] < end:
            cap = max(self.capacity, end, 2 * (0 if buf_k is None else buf_k.shape[2]))
            new_k = k.new_empty(k.shape[0], k.shape[1], cap, k.shape[3])
            new_v = v.new_empty(v.shape[0], v.shape[1], cap, v.shape[3])
            if buf_k is not None and buf_v is not None:
                new_k[:, :, : self.length] = buf_k[:, :, : self.length]
                new_v[:, :, : self.length] = buf_v[:, :, : self.length]
            self.k[layer], self.v[layer] = buf_k, buf_v = new_k, new_v
        buf_k[:, :, self.length : end] = k
        buf_v[:, :, self.length : end] = v
        return buf_k[:, :, :end], buf_v[:, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. the environments still running), in that order."""
        rows = rows.to(self.device)
        self.k = [None if b is None else b.index_select(0, rows) for b in self.k]
        self.v = [None if b is None else b.index_select(0, rows) for b in self.v]
        self.batch_size = int(rows.numel())


class Block(nn.Module):
    """Post-LN Transformer layer; heads listed in `explicit` use the softmax we can return, others fused."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, explicit: Iterable[int]):
        super().__init__()
        self.nh = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # same shapes as nn.MultiheadAttention's in_proj
        self.proj = nn.Linear(d_model, d_model)
        self.ln1 = nn.LayerNorm(d_model)
        # the reference's FF: Linear-ReLU-Linear-Dropout (no dropout between the two Linears)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout))
        self.ln2 = nn.LayerNorm(d_model)
        self.explicit = sorted(set(explicit))
        self.fused = [h for h in range(n_heads) if h not in self.explicit]
        # put head outputs back in head order after computing [explicit..., fused...]
        self.unperm = torch.argsort(torch.tensor(self.explicit + self.fused)).tolist()

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        return tuple(z.view(B, L, self.nh, C // self.nh).transpose(1, 2) for z in (q, k, v))  # 3 x (B, nh, L, hs)

    def _out(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B, nh, L, hs = y.shape
        x = self.ln1(x + self.proj(y.transpose(1, 2).reshape(B, L, nh * hs)))
        return self.ln2(x + self.ff(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, L, C = x.shape
        q, k, v = self._qkv(x)
        if not self.explicit:
            return self._out(x, F.scaled_dot_product_attention(q, k, v, is_causal=True)), None
        e = self.explicit
        # explicit heads in float32 even under autocast: the memory loss takes log of these probabilities
        with torch.autocast(device_type=x.device.type, enabled=False):
            att = (q[:, e].float() @ k[:, e].float().transpose(-2, -1)) / math.sqrt(C // self.nh)  # (B, ne, L, L)
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)  # diagonal always allowed: no NaN rows
        ys = [att.to(v.dtype) @ v[:, e]]  # (B, ne, L, hs)
        if self.fused:
            f = self.fused
            ys.append(F.scaled_dot_product_attention(q[:, f], k[:, f], v[:, f], is_causal=True))
        y = torch.cat(ys, dim=1)[:, self.unperm]  # (B, nh, L, hs)
        return self._out(x, y), att

    def step(self, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
        """New tokens x (B, n, C) attend to the cached ones and causally to each other."""
        n = x.shape[1]
        q, k, v = self._qkv(x)
        k, v = cache.append(layer, k, v)  # (B, nh, S, hs), S = cache.length + n
        S = k.shape[2]
        allowed = torch.arange(S, device=x.device)[None, :] <= torch.arange(S - n, S, device=x.device)[:, None]
        return self._out(x, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed))  # (B, n, C)


class AttentionTuner(nn.Module):
    """Causal Transformer policy over (o_0, a_0, o_1, a_1, ...) returning logits and supervised attention.

    supervised: (layer, head) pairs, 0-based, whose attention probabilities `forward` returns, in this order.
    """

    def __init__(
        self,
        *,
        obs_mode: str,
        n_actions: int,
        d_model: int = 512,
        n_layers: int = 4,
        n_heads: int = 2,
        d_ff: int = 2048,
        dropout: float = 0.1,
        supervised: Iterable[tuple[int, int]] = (),
    ):
        super().__init__()
        try:
            sup: tuple[tuple[int, ...], ...] = tuple(tuple(p) for p in supervised)
        except TypeError:
            raise ValueError(f"supervised must be a sequence of (layer, head) pairs, got {supervised!r}") from None
        _validate(obs_mode, n_actions, d_model, n_layers, n_heads, d_ff, dropout, sup)
        supervised = tuple((p[0], p[1]) for p in sup)
        self.hparams = dict(obs_mode=obs_mode, n_actions=n_actions, d_model=d_model, n_layers=n_layers,
                            n_heads=n_heads, d_ff=d_ff, dropout=dropout, supervised=supervised)
        self.obs_mode, self.n_actions, self.d_model = obs_mode, n_actions, d_model
        self.n_layers, self.n_heads, self.supervised = n_layers, n_heads, supervised
        self.obs_shape = OBS_SHAPES[obs_mode]

        self.obs_enc = SymbolicEncoder(d_model) if obs_mode == "symbolic" else PixelEncoder(d_model)
        self.act_enc = nn.Linear(n_actions, d_model)
        self.ln_emb = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        blocks = [Block(d_model, n_heads, d_ff, dropout, [h for (i, h) in supervised if i == layer])
                  for layer in range(n_layers)]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(d_model, n_actions)
        # where each supervised (layer, head) sits in its layer's explicit-attention tensor
        self._sup_index = [(i, blocks[i].explicit.index(h)) for (i, h) in supervised]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- embeddings -------------------------------------------------------------------------------------
    def _embed_obs(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        return encode_unique(self.obs_enc, obs.reshape(-1, *self.obs_shape)).view(*lead, self.d_model)  # (..., C)

    def _embed_act(self, actions: torch.Tensor) -> torch.Tensor:
        # out-of-range ids (e.g. -1 / -100 padding) are clamped: causality keeps them away from real tokens
        a = F.one_hot(actions.clamp(0, self.n_actions - 1), self.n_actions).to(self.act_enc.weight.dtype)
        return torch.tanh(self.act_enc(a))  # (..., C)

    def _check_obs(self, obs: torch.Tensor, lead: int) -> None:
        if obs.dtype != torch.uint8:
            raise ValueError(f"obs must be uint8 (the encoder scales/one-hots it), got {obs.dtype}")
        if obs.dim() != lead + 3 or tuple(obs.shape[lead:]) != self.obs_shape:
            raise ValueError(f"obs must have shape ({'B, T' if lead == 2 else 'B'}, {self.obs_shape}) "
                             f"for obs_mode={self.obs_mode!r}, got {tuple(obs.shape)}")

    # --- full sequence ----------------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """obs (B, T, *obs_shape) uint8, actions (B, T) int -> logits (B, T, A), attn (B, S, 2T, 2T) or None.

        attn holds float32 softmax probabilities of the supervised heads in the order given (zero above the
        diagonal). The last action is never seen by any logit (causality); pass anything in range.
        """
        self._check_obs(obs, 2)
        if actions.dim() != 2 or tuple(actions.shape) != tuple(obs.shape[:2]):
            raise ValueError(f"actions must have shape (B, T) = {tuple(obs.shape[:2])}, got {tuple(actions.shape)}")
        B, T = actions.shape
        C = self.d_model
        pe = sinusoid(torch.arange(T, device=obs.device), C)  # (T, C): PE(t) for both o_t and a_t
        o = self._embed_obs(obs) + pe  # (B, T, C)
        a = self._embed_act(actions) + pe  # (B, T, C)
        x = torch.stack((o, a), dim=2).view(B, 2 * T, C)  # (B, 2T, C): o_t at 2t, a_t at 2t + 1
        x = self.drop(self.ln_emb(x))
        atts = []
        for block in self.blocks:
            x, att = block(x)
            atts.append(att)  # (B, n_explicit, 2T, 2T) or None
        logits = self.head(x[:, 0::2])  # (B, T, A): a_t predicted at observation token 2t
        if not self.supervised:
            return logits, None
        attn = torch.stack([atts[i][:, j] for (i, j) in self._sup_index], dim=1)  # (B, S, 2T, 2T)
        return logits, attn

    # --- incremental decoding ---------------------------------------------------------------------------
    def new_cache(self, batch_size: int, device: torch.device | str | None = None, capacity: int = 128) -> KVCache:
        """An empty key/value cache for `step`; capacity (tokens) only sets the first allocation."""
        device = self.head.weight.device if device is None else device
        return KVCache(self.n_layers, batch_size, device, capacity)

    @torch.no_grad()
    def step(self, cache: KVCache, obs: torch.Tensor, prev_action: torch.Tensor | None = None) -> torch.Tensor:
        """Decode one timestep: append a_{t-1} (t > 0) and o_t; return the logits (B, A) for a_t.

        Equals `forward(...)[0][:, t]` on the same history (in eval mode). No gradients (evaluation only).
        """
        self._check_obs(obs, 1)
        if obs.shape[0] != cache.batch_size:
            raise ValueError(f"obs batch {obs.shape[0]} != cache batch_size {cache.batch_size}")
        t, C = cache.t, self.d_model
        x = self._embed_obs(obs)[:, None] + sinusoid(torch.tensor([t], device=obs.device), C)  # (B, 1, C)
        if t == 0:
            if prev_action is not None:
                raise ValueError("prev_action must be None at the first step (t = 0)")
        else:
            if prev_action is None or tuple(prev_action.shape) != (obs.shape[0],):
                raise ValueError(f"prev_action of shape (B,) = ({obs.shape[0]},) is required for t > 0")
            a = self._embed_act(prev_action)[:, None] + sinusoid(torch.tensor([t - 1], device=obs.device), C)
            x = torch.cat((a, x), dim=1)  # (B, 2, C): a_{t-1} then o_t
        x = self.drop(self.ln_emb(x))
        for i, block in enumerate(self.blocks):
            x = cast(Block, block).step(x, cache, i)
        cache.length += x.shape[1]
        cache.t += 1
        return self.head(x[:, -1])  # (B, A)


def _validate(obs_mode, n_actions, d_model, n_layers, n_heads, d_ff, dropout, supervised) -> None:
    if obs_mode not in OBS_SHAPES:
        raise ValueError(f"obs_mode must be one of {sorted(OBS_SHAPES)}, got {obs_mode!r}")
    for name, val in (("n_actions", n_actions), ("d_model", d_model), ("n_layers", n_layers),
                      ("n_heads", n_heads), ("d_ff", d_ff)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    if d_model % 2:
        raise ValueError(f"d_model ({d_model}) must be even (sinusoidal position encoding)")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    for p in supervised:
        if len(p) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in p):
            raise ValueError(f"supervised entries must be (layer, head) int pairs, got {p!r}")
        if not (0 <= p[0] < n_layers and 0 <= p[1] < n_heads):
            raise ValueError(f"supervised (layer, head) {p} out of range: 0-based, layer < {n_layers}, "
                             f"head < {n_heads}")
    if len(set(supervised)) != len(supervised):
        raise ValueError(f"supervised has duplicate (layer, head) pairs: {supervised}")
