"""Losses and attention diagnostics: pure functions of tensors.

Token layout (see model.py): o_t at token 2t, a_t at token 2t + 1, so a batch of T steps has L = 2T tokens.
The expert matrix E (B, L, L) has E[b, 2q, 2p] = 1 for each memory dependency pair (p, q) of episode b:
the observation query at step q should attend to the observation key at step p <= q (p == q is the
"self" pair: the expert uses the current frame). Rows of action tokens are all zero.

Masks: step_mask (B, T) is True at real (unpadded) steps; a token is real when its step is. annotated (B,)
is True for episodes whose pairs are kept (our decision: a seed-determined subset of fraction f); only they
enter the memory loss, so unannotated episodes are not pushed towards an all-zero target as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from attention_tuner.config import MEMORY_SPLITS as SPLITS
from attention_tuner.config import MEMORY_VARIANTS as VARIANTS
from attention_tuner.model import token_mask

EPS = 1e-6  # attention probabilities are clamped to [EPS, 1 - EPS] in the BCE's logs (see memory_loss)


def expert_matrix(
    pairs_list: Sequence[np.ndarray | torch.Tensor | None], T_max: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Expert attention targets E (B, 2T_max, 2T_max) float32 with E[b, 2q, 2p] = 1 for each pair (p, q).

    pairs_list[b]: int array (N, 2) of timestep pairs (p, q) with 0 <= p <= q < T_max, or None (an
    unannotated episode: all zeros; mask it out with `annotated` in the losses).
    """
    L = 2 * T_max
    E = torch.zeros(len(pairs_list), L, L)
    for b, pairs in enumerate(pairs_list):
        if pairs is None:
            continue
        pq = torch.as_tensor(np.asarray(pairs), dtype=torch.long).reshape(-1, 2)  # (N, 2)
        if pq.numel() == 0:
            continue
        p, q = pq[:, 0], pq[:, 1]
        if (p < 0).any() or (q >= T_max).any() or (p > q).any():
            raise ValueError(f"episode {b}: pairs (p, q) must satisfy 0 <= p <= q < T_max={T_max}")
        E[b, 2 * q, 2 * p] = 1.0
    return E.to(device)


def action_loss(
    logits: torch.Tensor, actions: torch.Tensor, step_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of logits (B, T, A) against actions (B, T), averaged over real steps -> (loss, accuracy).

    Padded steps contribute nothing (whatever their action id); with no real step both are 0. accuracy is
    detached.
    """
    m = step_mask.bool()
    tgt = torch.where(m, actions, torch.zeros_like(actions))  # padding ids (e.g. -100) never reach CE
    ce = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), reduction="none").view_as(m)  # (B, T)
    n = m.sum().clamp(min=1)
    loss = torch.where(m, ce, torch.zeros_like(ce)).sum() / n
    with torch.no_grad():
        acc = ((logits.argmax(-1) == actions) & m).sum().float() / n
    return loss, acc


def even_split_targets(E: torch.Tensor, S: int) -> torch.Tensor:
    """Split E (B, L, L) over S heads -> (B, S, L, L), as the reference's even_mem_split.

    The reference (memory_gym/dataset.py, `_get_head`) cuts the causal key range [0, x] of query token x into
    S contiguous chunks of ceil((x + 1) / S) tokens (the last may be shorter) and gives the pair (x, y) only
    to the head whose chunk holds key y; the other heads get target 0 for that key. We do the same in token
    space, over the S supervised heads in the order given. (The reference splits over all n_heads of a
    layer and picks the target by head number; the two agree when the supervised heads are all the heads of
    one layer, in order.)
    """
    L = E.shape[-1]
    x = torch.arange(L, device=E.device)[:, None]  # query token
    y = torch.arange(L, device=E.device)[None, :]  # key token
    owner = torch.div(y, torch.div(x + S, S, rounding_mode="floor"), rounding_mode="floor")  # (L, L)
    heads = torch.arange(S, device=E.device)[:, None, None]  # (S, 1, 1)
    return E[:, None] * (owner[None] == heads).to(E.dtype)  # (B, S, L, L)


def memory_loss(
    attn: torch.Tensor,
    E: torch.Tensor,
    step_mask: torch.Tensor,
    annotated: torch.Tensor,
    variant: str = "reference",
    split: str = "copy",
) -> torch.Tensor:
    """BCE between supervised attention probabilities attn (B, S, L, L) and E (B, L, L), L = 2T.

    Summed over the S heads and divided by S (the caller multiplies by the memory-loss weight). Per head the
    BCE is averaged over the selected cells of all annotated episodes pooled together, as the reference
    pools the cells of its batch (so with every episode annotated and split="copy" this equals the reference
    exactly; with split="even" the value differs where a head's attention is exactly 0 or 1 and its target the
    opposite, e.g. query row 0, whose one key belongs to one head: there each other head's cell costs -log(EPS)
    = 13.8 here and 100 in the reference (its BCELoss clamps the log at -100), a constant without gradient either
    way, so the gradients agree):
      variant="reference": every cell of the real-token square block (2L_b x 2L_b for an episode of L_b
        steps), upper triangle and action-token rows included;
      variant="decision_rows": observation-token query rows only, causal keys only (k <= 2q).
    split="copy": every head's target is E; split="even": see `even_split_targets`.
    Unannotated episodes and padding contribute nothing; with no annotated episode the loss is exactly 0
    and adds exactly zero gradient.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    B, S, L, _ = attn.shape
    if E.shape != (B, L, L) or step_mask.shape != (B, L // 2) or annotated.shape != (B,):
        raise ValueError(f"shapes must be attn (B, S, 2T, 2T), E (B, 2T, 2T), step_mask (B, T), annotated (B,); "
                         f"got {tuple(attn.shape)}, {tuple(E.shape)}, {tuple(step_mask.shape)}, "
                         f"{tuple(annotated.shape)}")
    tok = token_mask(step_mask)  # (B, L)
    cells = tok[:, :, None] & tok[:, None, :]  # (B, L, L): real query x real key
    if variant == "decision_rows":
        is_obs = torch.arange(L, device=attn.device) % 2 == 0
        causal = torch.ones(L, L, dtype=torch.bool, device=attn.device).tril()
        cells = cells & is_obs[None, :, None] & causal[None]
    cells = cells & annotated.bool()[:, None, None]
    tgt = E[:, None].to(torch.float32) if split == "copy" else even_split_targets(E.float(), S)  # (B, 1|S, L, L)
    p = attn.float()
    # clamped values, unclamped gradient: log(0) never appears (exactly-0 probabilities above the diagonal),
    # yet an expert key whose probability fell below EPS still gets pulled up (a plain clamp would give it
    # zero gradient; the reference's BCELoss clamps the log at -100 and keeps the gradient too)
    p = p + (p.clamp(EPS, 1.0 - EPS) - p).detach()
    bce = -(tgt * p.log() + (1.0 - tgt) * (1.0 - p).log())  # (B, S, L, L)
    bce = torch.where(cells[:, None], bce, torch.zeros_like(bce))
    n = cells.sum().clamp(min=1)  # cells per head
    return bce.sum() / (n * S)


def expert_rows(E: torch.Tensor, step_mask: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: observation query rows 2q of real steps of annotated episodes with at least one expert key
    (every real step: each carries its self-pair)."""
    return (E.sum(-1) > 0) & token_mask(step_mask) & annotated.bool()[:, None]


def earlier_keys(E: torch.Tensor) -> torch.Tensor:
    """E (B, L, L) without its diagonal: the expert's keys other than the query's own frame (its self-pair),
    i.e. the recalled frames."""
    return E * ~torch.eye(E.shape[-1], dtype=torch.bool, device=E.device)


def recall_rows(E: torch.Tensor, step_mask: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the `expert_rows` whose expert recalls an earlier frame: the decision steps of
    `training.decision_steps`, where memory is needed."""
    return (earlier_keys(E).sum(-1) > 0) & expert_rows(E, step_mask, annotated)


@torch.no_grad()
def expert_attention_mass(
    attn: torch.Tensor, E: torch.Tensor, step_mask: torch.Tensor, annotated: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean attention mass the heads of attn (B, S, L, L) put on the expert's keys (diagnostic), a 0-d tensor.

    Averaged over the S heads and over ``rows`` (B, L) bool, by default `expert_rows`: every real step of an
    annotated episode, where most of the expert's keys are the current frame (its self-pair). The attention on
    the recalled frames alone: ``expert_attention_mass(attn, earlier_keys(E), ..., rows=recall_rows(...))``.
    NaN when there is no such row.
    """
    rows = expert_rows(E, step_mask, annotated) if rows is None else rows  # (B, L)
    mass = (attn.float() * E[:, None].float()).sum(-1).mean(1)  # (B, L)
    n = rows.sum()
    if n == 0:
        return torch.tensor(float("nan"), device=attn.device)
    return mass[rows].sum() / n
