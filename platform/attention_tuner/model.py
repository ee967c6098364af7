"""AttentionTuner: a causal Transformer over interleaved (o_0, a_0, o_1, a_1, ...) tokens.

Follows the released reference (WilliamYue37/AttentionTuner, ltmb/ and memory_gym/transformer.py):
observation CNN -> Linear -> Tanh, one-hot action -> Linear -> Tanh, the same sinusoidal PE(t) added to o_t
and a_t, embedding LayerNorm + dropout, post-LN layers (x = LN(x + MHA(x)); x = LN(x + Dropout(FF(x))) with
FF = Linear-ReLU-Linear, no attention dropout), and the action a_t read at the observation token 2t.

`forward` returns values, never losses: the logits and the softmax probabilities of the supervised heads.
`new_cache` / `step` decode one timestep at a time with a key/value cache for closed-loop evaluation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from memory_tasks.core import SYMBOLIC_CODES

# Per-sample observation shapes (uint8, channels last, as the environments emit them).
OBS_SHAPES: dict[str, tuple[int, int, int]] = {"symbolic": (7, 7, 3), "pixels": (84, 84, 3)}
# MiniGrid code ranges: OBJECT_TO_IDX (unseen .. agent), COLOR_TO_IDX, door state (open/closed/locked).
N_OBJECTS, N_COLORS, N_STATES = SYMBOLIC_CODES
# Below this many observations a call encodes them all: finding duplicates would cost more than it saves.
DEDUP_MIN = 64


def encode_unique(encoder: Callable[[torch.Tensor], torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
    """encoder(obs) for obs (N, ...) uint8, running the encoder once per distinct observation.

    The observation encoder is most of a small model's compute, and the memory tasks repeat their views a lot
    (a batch of Ordering or Mortar Mayhem episodes holds 12-20% distinct frames, padding included), so this
    makes training several times faster. The result is the same function: row i is encoder(obs[i]), and the
    gradient reaching the encoder is the sum over the duplicates, exactly as without deduplication (up to the
    order of float additions).

    Any repeat is worth removing: the gather of the rows (and its backward, a sum into the distinct rows)
    costs far less than one more encoder row, so batches whose views are mostly distinct (Hallway) still save
    their padding's encodings, which are all one observation.
    """
    n = obs.shape[0]
    if n < DEDUP_MIN:
        return encoder(obs)
    uniq, inverse = unique_rows(obs.reshape(n, -1))
    if uniq.shape[0] == n:  # nothing repeats
        return encoder(obs)
    # index_select, not ``[inverse]``: the backward of advanced indexing (index_put_ with accumulate) adds the
    # duplicates' gradients in whatever order the CPU threads reach them, so a run with two or more threads did
    # not repeat exactly; index_select's backward (index_add_) sums them in index order: the same sums as
    # ``[inverse]`` on one thread, and faster
    return encoder(uniq.view(-1, *obs.shape[1:])).index_select(0, inverse)


@functools.cache
def settle_cpu_math() -> None:
    """One small matrix product on the CPU, once per process, before any real one. With two threads the first
    float32 product of a process was now and then summed in another order than every later one (a start-up
    effect of the CPU's matrix library, not pinned down further): the same encoder call on the same input, first
    in a fresh process, gave another result in 1 and in 2 of 24 processes, so a run would not always repeat
    exactly. With this product first, 40 processes of 40 agreed. Uses no random numbers."""
    torch.ones(256, 256) @ torch.ones(256, 256)


def unique_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(rows, dim=0, return_inverse=True)`` for a uint8 matrix (N, K): the distinct rows in
    lexicographic order and, per row, the index of its distinct row.

    On the CPU each row is compared as one K-byte string by NumPy's sort, the same order as the unsigned
    bytes' (6-7x faster than torch's row-by-row ``unique_dim`` on a paper-size batch: bench/unique_rows.py).
    """
    if rows.device.type != "cpu" or rows.dtype != torch.uint8 or rows.dim() != 2 or 0 in rows.shape:
        return torch.unique(rows, dim=0, return_inverse=True)
    a = np.ascontiguousarray(rows.numpy())
    keys = a.view(np.dtype((np.void, a.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return torch.from_numpy(a[first]), torch.from_numpy(inverse.reshape(-1).astype(np.int64, copy=False))


# Narrower models run every layer over the padded batch: there the copies of `Packing` cost more than the
# padding they skip (bench/training_variants.py on Hallway-30 epoch batches: d_model 128 2-6% slower with
# packing, d_model 512 5% faster).
PACK_MIN_D_MODEL = 256
# Below this many observations, decoding computes the second convolution as one matrix product of the
# gathered 3x3 neighbourhoods (im2col); PyTorch's own small-batch convolution is slower there.
IM2COL_MAX = 8


def token_mask(step_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) per-step flags -> (B, 2T) per-token flags: o_t and a_t (tokens 2t and 2t + 1) share step t's."""
    return step_mask.bool().repeat_interleave(2, dim=1)


def sinusoid(pos: torch.Tensor, d: int) -> torch.Tensor:
    """Sinusoidal encoding of float positions (n,) -> (n, d), as the reference; defined for any position."""
    div = torch.exp(torch.arange(0, d, 2, device=pos.device, dtype=torch.float32) * (-math.log(10000.0) / d))
    ang = pos.float()[:, None] * div[None, :]  # (n, d/2)
    # interleave sin (even channels) and cos (odd channels) without an in-place write
    return torch.stack((ang.sin(), ang.cos()), dim=-1).flatten(1)  # (n, d)


def flat_linear(h: torch.Tensor, fc: nn.Linear) -> torch.Tensor:
    """fc(h.flatten(1)) for a convolution's output h (N, C, H, W), fc over the (channel, row, column) order.

    A channels-last h is read in its memory order (a view: no copy of the activations, forward or backward)
    against the weight's columns reordered to (row, column, channel) instead; the same function up to the
    order of float additions.
    """
    N, C, H, W = h.shape
    if h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
        w = fc.weight.view(-1, C, H, W).permute(0, 2, 3, 1).reshape(-1, H * W * C)
        return F.linear(h.permute(0, 2, 3, 1).reshape(N, H * W * C), w, fc.bias)
    return fc(h.flatten(1))


class SymbolicEncoder(nn.Module):
    """(N, 7, 7, 3) uint8 MiniGrid codes -> one-hot 11 + 6 + 3 = 20 channels -> 2 convs -> Linear -> Tanh.

    Codes outside MiniGrid's ranges are clamped into range (the last object/colour/state), so a corrupt
    observation cannot index out of bounds; the encoders of memory_tasks never emit such codes.
    """

    hi: torch.Tensor
    offset: torch.Tensor
    cell_weight: torch.Tensor
    nb_cell: torch.Tensor
    nb_row: torch.Tensor

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
        # for `decode`: a cell's (object, colour, state) as one code in 0..197 (198: outside the view), and for
        # output cell (i, j) and kernel offset k = 3 di + dj the row 199 k + code of the cell it reads in the
        # 9x9 padded view
        self.register_buffer("cell_weight", torch.tensor([N_COLORS * N_STATES, N_STATES, 1]), persistent=False)
        nb = torch.tensor([(9 * (i + di) + j + dj, 199 * (3 * di + dj)) for i in range(7) for j in range(7)
                           for di in range(3) for dj in range(3)])  # (441, 2)
        self.register_buffer("nb_cell", nb[:, 0].contiguous(), persistent=False)
        self.register_buffer("nb_row", nb[:, 1].contiguous(), persistent=False)

    def conv1_table(self) -> torch.Tensor:
        """(9 * 199, 40): the first convolution's response, bias included, at kernel offset k to a cell of
        code c is row 199 k + c (code 198, outside the view, is a zero row). For `decode`."""
        conv = cast(nn.Conv2d, self.cnn[0])
        w = conv.weight.permute(2, 3, 1, 0).reshape(9, 20, 40)  # [3 di + dj, input channel]
        o, c, s = (z.reshape(-1) for z in torch.meshgrid(
            *(torch.arange(n, device=w.device) for n in (N_OBJECTS, N_COLORS, N_STATES)), indexing="ij"))
        table = w[:, o] + w[:, N_OBJECTS + c] + w[:, N_OBJECTS + N_COLORS + s]  # (9, 198, 40): one-hot sums
        table[4] += cast(torch.Tensor, conv.bias)  # the centre offset always reads a cell of the view: it carries the bias
        return torch.cat((table, table.new_zeros(9, 1, 40)), 1).reshape(9 * 199, 40)

    def conv2_matrix(self) -> torch.Tensor:
        """(9 * 40, 80): the second convolution's weight as a matrix over a cell's gathered 3x3 neighbourhood
        (row 40 k + c: kernel offset k = 3 di + dj, input channel c). For `decode` with few observations."""
        return cast(nn.Conv2d, self.cnn[2]).weight.permute(2, 3, 1, 0).reshape(9 * 40, 80).contiguous()

    def decode(self, obs: torch.Tensor, conv1: torch.Tensor, conv2: torch.Tensor | None = None) -> torch.Tensor:
        """`forward` for decoding, with the one-hot and the first convolution folded into one lookup: each
        output cell sums 9 rows of ``conv1_table()`` (passed in, made once per cache) with embedding_bag.
        With at most IM2COL_MAX observations and ``conv2 = conv2_matrix()``, the second convolution is one
        matrix product of the gathered neighbourhoods. The same function as `forward` up to float rounding
        (the sums are taken in another order)."""
        N = obs.shape[0]
        code = (torch.minimum(obs.long(), self.hi.view(3)) * self.cell_weight).sum(-1)  # (N, 7, 7)
        code = F.pad(code, (1, 1, 1, 1), value=198).view(N, 81).index_select(1, self.nb_cell) + self.nb_row
        x = F.embedding_bag(code.view(N * 49, 9), conv1, mode="sum").relu_()  # (N * 49, 40)
        conv = cast(nn.Conv2d, self.cnn[2])
        bias = conv.bias
        if conv2 is not None and N <= IM2COL_MAX:
            x = F.pad(x.view(N, 7, 7, 40), (0, 0, 1, 1, 1, 1)).view(N, 81, 40)  # zero border: conv padding
            x = x.index_select(1, self.nb_cell).view(N * 49, 9 * 40)  # each cell's 3x3 neighbourhood
            x = torch.addmm(cast(torch.Tensor, bias), x, conv2).relu_().view(N, 7, 7, 80).permute(0, 3, 1, 2)  # (N, 80, 7, 7)
        else:  # (N, 40, 7, 7), channels last: oneDNN's preferred layout
            x = F.conv2d(x.view(N, 7, 7, 40).permute(0, 3, 1, 2), conv.weight, bias, padding=1).relu_()
        return torch.tanh(F.linear(x.flatten(1), self.fc.weight, self.fc.bias))  # (N, d)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        idx = torch.minimum(obs.long(), self.hi.view(3)) + self.offset.view(3)  # disjoint ranges, (N, 7, 7, 3)
        x = torch.zeros(*obs.shape[:3], 20, device=obs.device).scatter_(-1, idx, 1.0)  # one-hot (N, 7, 7, 20)
        # (N, 20, 7, 7) in channels-last memory: the convolutions run in oneDNN's preferred layout (faster
        # forward + backward than channels-first on the CPU)
        return torch.tanh(flat_linear(self.cnn(x.permute(0, 3, 1, 2)), self.fc))  # (N, d)


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
        x = obs.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, 84, 84) channels-last; uint8 cannot be out of range
        return torch.tanh(flat_linear(self.cnn(x), self.fc))  # (N, d)


class KVCache:
    """Keys and values of the tokens decoded so far, written in place into buffers allocated once.

    One buffer per layer, (B, capacity, 2 * C): a token's keys then its values, laid out as the last 2C columns
    of the layer's qkv projection, so a step writes its new tokens with one plain copy and attention reads
    views of the filled part. The buffers are allocated at the first step (in the dtype the model produces:
    autocast gives half-precision caches) with room for ``capacity`` tokens; give the longest episode's
    2 * max_steps and they never move (past it they double). All rows share one length (environments are
    stepped in lockstep); rows whose episode has ended can be dropped with `select`.
    The cache also keeps decoding constants derived from the weights at its first steps (the action
    embeddings, the symbolic encoder's first-convolution table, a table of position encodings, the parameter
    tensors of each layer, looked up once instead of through module attributes every step), so the
    weights must not change while a cache is in use: make a new cache after an optimiser step.
    """

    def __init__(self, n_layers: int, batch_size: int, device: torch.device | str, capacity: int = 128):
        self.kv: list[torch.Tensor | None] = [None] * n_layers
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.capacity = capacity
        self.length = 0  # tokens cached (2t - 1 after t steps, t >= 1)
        self.t = 0  # timesteps decoded
        self.actions: torch.Tensor | None = None  # (A, C) embedding of each action (tanh(Linear(one-hot)))
        self.pe: torch.Tensor | None = None  # (P, C) sinusoid(0 .. P - 1)
        self.conv1: torch.Tensor | None = None  # SymbolicEncoder.conv1_table()
        self.conv2: torch.Tensor | None = None  # SymbolicEncoder.conv2_matrix()
        self._mask: torch.Tensor | None = None  # (N, N) additive causal mask (0 / -inf): masks are views
        self.weights: dict[int | str, tuple] = {}  # parameters per layer, looked up at the first step

    @property
    def allocated(self) -> int:
        """Tokens the buffers have room for (0 before the first step)."""
        buf = self.kv[0]
        return 0 if buf is None else buf.shape[1]

    def write(self, layer: int, kv: torch.Tensor, n_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' keys and values kv (B, n, 2C) after the cached ones; return views
        (B, n_heads, S, C / n_heads) of all keys and all values, S = length + n."""
        B, n, C2 = kv.shape
        end = self.length + n
        buf = self.kv[layer]
        if buf is None or buf.shape[1] < end:
            cap = max(self.capacity, end, 2 * (0 if buf is None else buf.shape[1]))
            new = kv.new_empty(B, cap, C2)
            if buf is not None:
                new[:, : self.length] = buf[:, : self.length]
            self.kv[layer] = buf = new
        buf[:, self.length : end] = kv
        C = C2 // 2
        k = buf[:, :end, :C].view(B, end, n_heads, C // n_heads).transpose(1, 2)
        v = buf[:, :end, C:].view(B, end, n_heads, C // n_heads).transpose(1, 2)
        return k, v

    def causal_mask(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """(n, S) additive mask: new token i (of n) sees the cached tokens and the new ones up to itself."""
        end = self.length + n
        if self._mask is None or self._mask.shape[0] < end or self._mask.dtype != dtype:
            size = max(self.capacity, 2 * end)
            allowed = torch.ones(size, size, dtype=torch.bool, device=self.device).tril()
            self._mask = torch.zeros(size, size, dtype=dtype, device=self.device).masked_fill(~allowed, -math.inf)
        return self._mask[self.length : end, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. the environments still running), in that order.

        Increasing rows (what evaluation passes: the survivors in order) are moved down in place, only their
        filled part and only the rows that move; any other order is gathered into new buffers.
        """
        keep = [int(r) for r in rows.tolist()]
        if all(a < b for a, b in zip(keep, keep[1:], strict=False)):
            for layer, buf in enumerate(self.kv):
                if buf is None:
                    continue
                for dst, src in enumerate(keep):
                    if src != dst:  # src > dst: never a row already overwritten
                        buf[dst, : self.length] = buf[src, : self.length]
                self.kv[layer] = buf[: len(keep)]
        else:
            index = rows.to(self.device)
            self.kv = [None if b is None else b.index_select(0, index) for b in self.kv]
        self.batch_size = len(keep)


class Packing:
    """Where the real tokens of a right-padded batch (B, L) sit, to run the position-wise layers on them only.

    Every layer but attention works token by token (projections, feed-forward, LayerNorm, dropout), so it runs
    on the real tokens packed into (N, C), N = real tokens of the batch: no compute goes to padding. Attention
    needs the (B, L) layout: `pad` puts the packed rows back in place with zeros at the padding, `pack` takes
    them out again. Padding sits after every real token of its row, so causal attention never lets a real
    token see it: real tokens' outputs are the same as in the padded computation.
    """

    def __init__(self, token_mask: torch.Tensor):
        B, L = token_mask.shape
        self.B, self.L = B, L
        self.index = token_mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions in B * L

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (N, D): the real tokens."""
        return x.reshape(self.B * self.L, x.shape[-1]).index_select(0, self.index)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (B, L, D), zeros at the padding."""
        out = x.new_zeros(self.B * self.L, x.shape[-1]).index_copy_(0, self.index, x)  # in place: no second copy
        return out.view(self.B, self.L, x.shape[-1])


def _head_index(heads: list[int]) -> slice | list[int]:
    """Index of these heads along the head dimension: a slice when they are contiguous, else the list."""
    if heads and heads == list(range(heads[0], heads[-1] + 1)):
        return slice(heads[0], heads[-1] + 1)
    return heads


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
        self._plan = self.plan(self.explicit)

    def plan(self, explicit: list[int]) -> tuple[slice | list[int], slice | list[int], list[int] | None]:
        """How `forward` splits the heads: the explicit heads' index, the fused heads' index (slices where they
        are contiguous: views, no gather copy), and the permutation that puts the head outputs, computed as
        [explicit..., fused...], back in head order (None when they already are)."""
        fused = [h for h in range(self.nh) if h not in explicit]
        unperm = torch.argsort(torch.tensor(explicit + fused)).tolist()
        return _head_index(explicit), _head_index(fused), None if unperm == list(range(self.nh)) else unperm

    def _qkv(self, x: torch.Tensor, packing: Packing | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = self.qkv(x) if packing is None else packing.pad(self.qkv(x))  # (B, L, 3C)
        B, L, C3 = qkv.shape
        C = C3 // 3
        return tuple(z.view(B, L, self.nh, C // self.nh).transpose(1, 2) for z in qkv.split(C, dim=2))  # (B, nh, L, hs)

    def _out(self, x: torch.Tensor, y: torch.Tensor, packing: Packing | None) -> torch.Tensor:
        B, nh, L, hs = y.shape
        y = y.transpose(1, 2).reshape(B, L, nh * hs)
        x = self.ln1(x + self.proj(y if packing is None else packing.pack(y)))
        return self.ln2(x + self.ff(x))

    def forward(self, x: torch.Tensor, packing: Packing | None = None, explicit: list[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, L, C), or the real tokens (N, C) of ``packing``'s batch -> the same shape, and the explicit
        heads' attention probabilities (B, n_explicit, L, L) or None. ``explicit`` (sorted, distinct) replaces
        the layer's explicit heads for this call (to look at heads no loss supervises)."""
        q, k, v = self._qkv(x, packing)
        L, hs = q.shape[2], q.shape[3]
        heads = self.explicit if explicit is None else explicit
        if not heads:
            return self._out(x, F.scaled_dot_product_attention(q, k, v, is_causal=True), packing), None
        e, f, unperm = self._plan if explicit is None else self.plan(explicit)
        # explicit heads in float32 even under autocast: the memory loss takes log of these probabilities
        with torch.autocast(device_type=x.device.type, enabled=False):
            scale = 1.0 / math.sqrt(hs)  # on the queries: L x hs products instead of L x L
            att = (q[:, e].float() * scale) @ k[:, e].float().transpose(-2, -1)  # (B, ne, L, L)
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)  # diagonal always allowed: no NaN rows
        y = att.to(v.dtype) @ v[:, e]  # (B, ne, L, hs)
        if len(heads) < self.nh:
            y = torch.cat((y, F.scaled_dot_product_attention(q[:, f], k[:, f], v[:, f], is_causal=True)), dim=1)
            if unperm is not None:
                y = y[:, unperm]  # (B, nh, L, hs), back in head order
        return self._out(x, y, packing), att

    def step(self, x: torch.Tensor, cache: KVCache, layer: int, last_only: bool = False) -> torch.Tensor:
        """New tokens x (B, n, C) attend to the cached ones and causally to each other.

        last_only: return the last token's output only (B, 1, C); the others still write their keys/values.
        """
        B, n, C = x.shape
        w = cache.weights.get(layer)
        if w is None:  # the parameters, looked up once per cache instead of through module attributes per step
            ff_in, ff_out = cast(nn.Linear, self.ff[0]), cast(nn.Linear, self.ff[2])
            w = cache.weights[layer] = (
                self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.ln1.weight, self.ln1.bias,
                ff_in.weight, ff_in.bias, ff_out.weight, ff_out.bias, self.ln2.weight, self.ln2.bias, self.ln1.eps,
                self.ln2.eps)
        qkv_w, qkv_b, proj_w, proj_b, ln1_w, ln1_b, ff1_w, ff1_b, ff2_w, ff2_b, ln2_w, ln2_b, eps1, eps2 = w
        qkv = F.linear(x, qkv_w, qkv_b)  # (B, n, 3C)
        k, v = cache.write(layer, qkv[:, :, C:], self.nh)  # (B, nh, S, hs), S = cache.length + n
        q = qkv[:, :, :C].view(B, n, self.nh, C // self.nh).transpose(1, 2)  # (B, nh, n, hs)
        mask = None
        if last_only and n > 1:
            q, x = q[:, :, -1:], x[:, -1:]  # the last token sees every key: no mask
        elif n > 1:
            mask = cache.causal_mask(n, q.dtype)  # (n, S)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, n', hs)
        # the same operations as `_out`, without the module calls
        y = F.linear(y.transpose(1, 2).reshape(B, -1, C), proj_w, proj_b)
        x = torch.layer_norm(x + y, (C,), ln1_w, ln1_b, eps1)
        h = F.linear(torch.relu(F.linear(x, ff1_w, ff1_b)), ff2_w, ff2_b)
        if self.training:
            h = self.ff[3](h)
        return torch.layer_norm(x + h, (C,), ln2_w, ln2_b, eps2)


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
        pairs: tuple[tuple[int, int], ...] = tuple((p[0], p[1]) for p in sup)
        self.hparams: dict[str, Any] = dict(obs_mode=obs_mode, n_actions=n_actions, d_model=d_model, n_layers=n_layers,
                            n_heads=n_heads, d_ff=d_ff, dropout=dropout, supervised=pairs)
        self.obs_mode, self.n_actions, self.d_model = obs_mode, n_actions, d_model
        self.n_layers, self.n_heads, self.supervised = n_layers, n_heads, pairs
        self.obs_shape = OBS_SHAPES[obs_mode]

        self.obs_enc = SymbolicEncoder(d_model) if obs_mode == "symbolic" else PixelEncoder(d_model)
        self.act_enc = nn.Linear(n_actions, d_model)
        self.ln_emb = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        blocks = [Block(d_model, n_heads, d_ff, dropout, [h for (i, h) in pairs if i == layer])
                  for layer in range(n_layers)]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(d_model, n_actions)
        # where each supervised (layer, head) sits in its layer's explicit-attention tensor
        self._sup_index = [(i, blocks[i].explicit.index(h)) for (i, h) in pairs]

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
    def forward(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None,
                probe: Iterable[tuple[int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """obs (B, T, *obs_shape) uint8, actions (B, T) int -> logits (B, T, A), attn (B, S, 2T, 2T) or None.

        attn holds float32 softmax probabilities of the supervised heads in the order given (zero above the
        diagonal); with ``probe``, (layer, head) pairs, those heads' instead (the same function: to measure
        where a model's heads look, the vanilla Transformer's included). The last action is never seen by any
        logit (causality); pass anything in range.
        mask (B, T) bool, True on real steps, each row's real steps first (right padding): when the batch has
        padding and d_model >= PACK_MIN_D_MODEL, the layers then run on the real tokens only (`Packing`).
        Real steps' logits and the attention among real tokens are the same function as without it; at padded
        steps the logits and attention rows are meaningless (mask them).
        """
        self._check_obs(obs, 2)
        if actions.dim() != 2 or tuple(actions.shape) != tuple(obs.shape[:2]):
            raise ValueError(f"actions must have shape (B, T) = {tuple(obs.shape[:2])}, got {tuple(actions.shape)}")
        B, T = actions.shape
        C = self.d_model
        packing = None
        if mask is not None:
            if mask.dtype != torch.bool or tuple(mask.shape) != (B, T):
                raise ValueError(f"mask must be a bool tensor of shape (B, T) = {(B, T)}, got {mask.dtype} "
                                 f"{tuple(mask.shape)}")
            if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
                raise ValueError("mask must be True on a prefix of each row (real steps first, then padding)")
            if self.d_model >= PACK_MIN_D_MODEL and not bool(mask.all()):  # no padding: nothing to gain
                packing = Packing(token_mask(mask))
        pe = sinusoid(torch.arange(T, device=obs.device), C)  # (T, C): PE(t) for both o_t and a_t
        o = self._embed_obs(obs) + pe  # (B, T, C)
        a = self._embed_act(actions) + pe  # (B, T, C)
        x = torch.stack((o, a), dim=2).view(B, 2 * T, C)  # (B, 2T, C): o_t at 2t, a_t at 2t + 1
        if packing is not None:
            x = packing.pack(x)  # (N, C): the real tokens
        pairs, index = self.supervised, self._sup_index
        explicit: list[list[int] | None] = [None] * self.n_layers
        if probe is not None:
            probed = tuple(tuple(p) for p in probe)
            _check_heads("probe", probed, self.n_layers, self.n_heads)
            pairs = tuple((p[0], p[1]) for p in probed)
            chosen = [sorted({h for i, h in pairs if i == layer}) for layer in range(self.n_layers)]
            explicit, index = list(chosen), [(i, chosen[i].index(h)) for i, h in pairs]
        x = self.drop(self.ln_emb(x))
        atts = []
        for block, heads in zip(self.blocks, explicit, strict=True):
            x, att = block(x, packing, heads)
            atts.append(att)  # (B, n_explicit, 2T, 2T) or None
        if packing is not None:
            x = packing.pad(x)  # (B, 2T, C)
        logits = self.head(x[:, 0::2])  # (B, T, A): a_t predicted at observation token 2t
        if not pairs:
            return logits, None
        attn = torch.stack([atts[i][:, j] for (i, j) in index], dim=1)  # (B, S, 2T, 2T)
        return logits, attn

    # --- incremental decoding ---------------------------------------------------------------------------
    def new_cache(self, batch_size: int, device: torch.device | str | None = None, capacity: int = 128) -> KVCache:
        """An empty key/value cache for `step`; capacity (tokens) only sets the first allocation."""
        device = self.head.weight.device if device is None else device
        return KVCache(self.n_layers, batch_size, device, capacity)

    @torch.no_grad()
    def step(self, cache: KVCache, obs: torch.Tensor, prev_action: torch.Tensor | None = None) -> torch.Tensor:
        """Decode one timestep: append a_{t-1} (t > 0) and o_t; return the logits (B, A) for a_t.

        Equals `forward(...)[0][:, t]` on the same history (in eval mode, up to float rounding). No gradients
        (evaluation only). Only the new tokens are computed: the 2 tokens of a step through every layer but the
        last, where only o_t's output is needed (a_{t-1} there only contributes its key and value); symbolic
        observations go through `SymbolicEncoder.decode`, actions and positions are looked up in tables.
        The same as `step_embedded(cache, encode_step(cache, obs), prev_action)`.
        """
        return self.step_embedded(cache, self.encode_step(cache, obs), prev_action)

    @torch.no_grad()
    def encode_step(self, cache: KVCache, obs: torch.Tensor) -> torch.Tensor:
        """The observation encoder's output for decoding: obs (B, *obs_shape) uint8 -> (B, C), before the
        position encoding. A pure function of each observation (evaluation can reuse it for repeated views)."""
        self._check_obs(obs, 1)
        if isinstance(self.obs_enc, SymbolicEncoder):
            if cache.conv1 is None:
                cache.conv1, cache.conv2 = self.obs_enc.conv1_table(), self.obs_enc.conv2_matrix()
            return self.obs_enc.decode(obs, cache.conv1, cache.conv2)
        return self._embed_obs(obs)

    @torch.no_grad()
    def step_embedded(self, cache: KVCache, emb: torch.Tensor, prev_action: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """`step` from the observations' encodings emb (B, C) = `encode_step(cache, obs)`."""
        t, C = cache.t, self.d_model
        if emb.dim() != 2 or tuple(emb.shape) != (cache.batch_size, C):
            raise ValueError(f"observation encodings must have shape (cache batch_size, d_model) = "
                             f"({cache.batch_size}, {C}), got {tuple(emb.shape)}")
        if t == 0:
            if prev_action is not None:
                raise ValueError("prev_action must be None at the first step (t = 0)")
        elif prev_action is None or tuple(prev_action.shape) != (emb.shape[0],):
            raise ValueError(f"prev_action of shape (B,) = ({emb.shape[0]},) is required for t > 0")
        if cache.pe is None or cache.pe.shape[0] <= t:  # the same values as forward's sinusoid(arange(T))
            size = max(cache.capacity // 2 + 1, t + 1, 2 * (0 if cache.pe is None else cache.pe.shape[0]))
            cache.pe = sinusoid(torch.arange(size, device=emb.device), C)
        x = emb + cache.pe[t]  # (B, C)
        if t > 0:
            if cache.actions is None:  # the embedding of each action: rows of tanh(Linear(one-hot))
                cache.actions = self._embed_act(torch.arange(self.n_actions, device=emb.device))
            a = cache.actions.index_select(0, cast(torch.Tensor, prev_action).clamp(0, self.n_actions - 1)) + cache.pe[t - 1]
            x = torch.stack((a, x), dim=1)  # (B, 2, C): a_{t-1} then o_t
        else:
            x = x[:, None]  # (B, 1, C)
        w = cache.weights.get("model")
        if w is None:
            w = cache.weights["model"] = (self.ln_emb.weight, self.ln_emb.bias, self.ln_emb.eps, self.head.weight,
                                          self.head.bias, [cast(Block, b) for b in self.blocks])
        ln_w, ln_b, eps, head_w, head_b, blocks = w
        x = torch.layer_norm(x, (C,), ln_w, ln_b, eps)
        if self.training:
            x = self.drop(x)
        n, last = x.shape[1], len(blocks) - 1
        for i, block in enumerate(blocks):
            x = block.step(x, cache, i, last_only=i == last)
        cache.length += n
        cache.t += 1
        return F.linear(x[:, -1], head_w, head_b)  # (B, A)


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
    _check_heads("supervised", supervised, n_layers, n_heads)


def _check_heads(name: str, pairs: tuple[tuple[int, ...], ...], n_layers: int, n_heads: int) -> None:
    for p in pairs:
        if len(p) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in p):
            raise ValueError(f"{name} entries must be (layer, head) int pairs, got {p!r}")
        if not (0 <= p[0] < n_layers and 0 <= p[1] < n_heads):
            raise ValueError(f"{name} (layer, head) {p} out of range: 0-based, layer < {n_layers}, "
                             f"head < {n_heads}")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"{name} has duplicate (layer, head) pairs: {pairs}")
