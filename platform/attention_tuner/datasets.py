"""Datasets -> training-ready form: verified loading, nested annotation subsets, annotation noise, batches.

A loaded :class:`Demonstrations` keeps every observation as uint8 symbolic codes in one contiguous array
(about 150 bytes a step); batches are cut from it and padded only to their own longest episode. Pixel
observations are rendered per batch from the symbolic codes (``memory_tasks.gridworld``), never up front.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from attention_tuner.config import EVAL_SEED_BASE, NoiseConfig, held_out_count
from attention_tuner.demos import DatasetError, read_manifest, sha256_of


@dataclass
class Demonstrations:
    """Episodes of one dataset, flattened: episode i owns steps ``offsets[i]:offsets[i+1]``."""

    task: str
    kwargs: dict[str, Any]
    seeds: np.ndarray  # (E,) int64 environment seeds
    offsets: np.ndarray  # (E+1,) int64
    obs: np.ndarray  # (N, 7, 7, 3) uint8 symbolic, N = total steps
    actions: np.ndarray  # (N,) int64
    pairs: list[np.ndarray]  # per episode (P_i, 2) int64 rows (p, q)
    returns: np.ndarray  # (E,) float32
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def episode_obs(self, i: int) -> np.ndarray:
        return self.obs[self.offsets[i] : self.offsets[i + 1]]

    def episode_actions(self, i: int) -> np.ndarray:
        return self.actions[self.offsets[i] : self.offsets[i + 1]]


def load(path: str | Path, verify: bool = True) -> Demonstrations:
    """Read a dataset directory; a missing shard, a checksum mismatch or a bad schema is a DatasetError."""
    root = Path(path)
    manifest = read_manifest(root)
    seeds: list[int] = []
    lengths: list[int] = []
    obs: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    pairs: list[np.ndarray] = []
    returns: list[float] = []
    wanted = int(manifest["episodes"])
    for shard in manifest["shards"]:
        file = root / shard["file"]
        if not file.is_file():
            raise DatasetError(f"{file}: shard listed in the manifest is missing (generating the dataset again "
                               f"writes it anew)")
        if verify and sha256_of(file) != shard["sha256"]:
            raise DatasetError(f"{file}: checksum mismatch (the shard is corrupted or was changed; delete it and "
                               f"generate the dataset again)")
        try:
            table = pq.read_table(file)
        except Exception as e:  # pyarrow raises several types for damaged files
            raise DatasetError(f"{file}: unreadable shard ({type(e).__name__})") from None
        needed = {"seed", "length", "obs", "actions", "pair_p", "pair_q", "return"}
        if not needed <= set(table.column_names):
            raise DatasetError(f"{file}: schema lacks {sorted(needed - set(table.column_names))}")
        cols = table.to_pydict()
        for k in range(table.num_rows):
            if len(seeds) == wanted:
                break
            T = cols["length"][k]
            seeds.append(cols["seed"][k])
            lengths.append(T)
            obs.append(np.frombuffer(cols["obs"][k], dtype=np.uint8).reshape(T, 7, 7, 3))
            actions.append(np.asarray(cols["actions"][k], dtype=np.int64))
            pairs.append(np.stack([cols["pair_p"][k], cols["pair_q"][k]], axis=1).astype(np.int64).reshape(-1, 2))
            returns.append(cols["return"][k])
    if len(seeds) < wanted:
        raise DatasetError(f"{root / 'manifest.json'}: {wanted} episodes promised, {len(seeds)} found in the shards")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Demonstrations(
        task=manifest["task"],
        kwargs=manifest["kwargs"],
        seeds=np.asarray(seeds, dtype=np.int64),
        offsets=offsets,
        obs=np.concatenate(obs) if obs else np.zeros((0, 7, 7, 3), np.uint8),
        actions=np.concatenate(actions) if actions else np.zeros(0, np.int64),
        pairs=pairs,
        returns=np.asarray(returns, dtype=np.float32),
        manifest=manifest,
    )


# ----------------------------------------------------------------------------- subsets, fixed by seeds


def _uniform(salt: str, seed: int, keys: np.ndarray) -> np.ndarray:
    """A deterministic number in [0, 1) per key, independent of the order episodes are stored in."""
    out = np.empty(len(keys))
    for i, k in enumerate(keys.tolist()):
        h = hashlib.blake2b(f"{salt}:{seed}:{k}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "little") / 2**64
    return out


def split(demos: Demonstrations, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode indices; the same for every trial on the same dataset."""
    if val_fraction <= 0 or len(demos) < 2:
        return np.arange(len(demos)), np.arange(0)
    order = np.argsort(_uniform("val", 0, demos.seeds), kind="stable")
    n_val = held_out_count(len(demos), val_fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def annotated_subset(seeds: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the episodes whose pairs are kept.

    Episodes are ranked once per ``seed``; a fraction keeps a prefix of that ranking, so the subset at
    0.1% is inside the one at 1%, which is inside the one at 10%. Any fraction > 0 keeps at least one.
    """
    n = len(seeds)
    if fraction <= 0 or n == 0:
        return np.zeros(n, dtype=bool)
    count = min(n, max(1, round(fraction * n)))
    order = np.argsort(_uniform("annotate", seed, seeds), kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:count]] = True
    return mask


def noisy_pairs(pairs: np.ndarray, noise: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply annotation noise to one episode's pairs; self-pairs are kept as they are; stays causal."""
    if noise.drop == 0 and noise.shift == 0 and noise.spurious == 0:
        return pairs
    is_self = pairs[:, 0] == pairs[:, 1]
    selfs, others = pairs[is_self], pairs[~is_self]
    if noise.drop > 0:
        others = others[rng.random(len(others)) >= noise.drop]
    if noise.shift > 0 and len(others):
        moved = others[:, 0] + rng.integers(-noise.shift, noise.shift + 1, size=len(others))
        others = np.stack([np.clip(moved, 0, others[:, 1]), others[:, 1]], axis=1)
    n_spurious = rng.poisson(noise.spurious * max(int((~is_self).sum()), 1)) if noise.spurious > 0 else 0
    if n_spurious:
        q = rng.choice(selfs[:, 1], size=n_spurious)
        p = np.floor(rng.random(n_spurious) * (q + 1)).astype(np.int64)
        others = np.concatenate([others, np.stack([p, q], axis=1)])
    out = np.unique(np.concatenate([selfs, others]), axis=0)
    return out[np.lexsort((out[:, 0], out[:, 1]))]


def annotated_pairs(demos: Demonstrations, fraction: float, seed: int, noise: NoiseConfig,
                among: np.ndarray | None = None) -> list[np.ndarray | None]:
    """Per episode: its (possibly noisy) pairs if annotated, else None.

    among: the indices of the episodes that may be annotated (a trial's training episodes); the fraction is
    of those, so ``max(1, round(fraction * len(among)))`` of them keep their pairs for any fraction > 0, and
    every other episode gets None. Default: all episodes.
    """
    mask = np.zeros(len(demos), dtype=bool)
    index = np.arange(len(demos)) if among is None else np.asarray(among, dtype=np.int64)
    mask[index[annotated_subset(demos.seeds[index], fraction, seed)]] = True
    out: list[np.ndarray | None] = []
    for i, keep in enumerate(mask):
        if not keep:
            out.append(None)
            continue
        rng = np.random.default_rng([seed, int(demos.seeds[i]), 7919])
        out.append(noisy_pairs(demos.pairs[i], noise, rng))
    return out


def eval_seeds(n: int, offset: int = 0) -> list[int]:
    """Evaluation seeds: a range that no training dataset may use (``check_request`` enforces it)."""
    return list(range(EVAL_SEED_BASE + offset, EVAL_SEED_BASE + offset + n))


# ------------------------------------------------------------------------------------------- batches


@dataclass
class Batch:
    obs: np.ndarray  # (B, T, 7, 7, 3) uint8, T = longest episode of this batch
    actions: np.ndarray  # (B, T) int64, 0 where padded
    mask: np.ndarray  # (B, T) bool, True on real steps
    pairs: list[np.ndarray | None]  # per episode: (P, 2) pairs if annotated, else None
    index: np.ndarray  # (B,) episode indices in the dataset

    @property
    def annotated(self) -> np.ndarray:
        return np.array([p is not None for p in self.pairs])


def make_batch(demos: Demonstrations, index: np.ndarray, pairs: Sequence[np.ndarray | None]) -> Batch:
    lengths = demos.lengths[index]
    B, T = len(index), int(lengths.max())
    obs = np.zeros((B, T, 7, 7, 3), dtype=np.uint8)
    actions = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=bool)
    for b, i in enumerate(index):
        L = lengths[b]
        obs[b, :L] = demos.episode_obs(i)
        actions[b, :L] = demos.episode_actions(i)
        mask[b, :L] = True
    return Batch(obs, actions, mask, [pairs[i] for i in index], np.asarray(index))


BUCKET_BATCHES = 8  # length bucketing: sort runs of this many batches by length before cutting them


def batches(demos: Demonstrations, index: np.ndarray, pairs: Sequence[np.ndarray | None], batch_size: int,
            rng: np.random.Generator | None = None, bucket: bool = True):
    """Yield batches over ``index``, each padded only to its own longest episode.

    With ``rng`` the order is shuffled. With ``bucket`` the shuffled episodes are cut into runs of
    ``BUCKET_BATCHES`` batches, each run sorted by length before it is cut into batches, and the batches
    shuffled again: episodes of similar length share a batch, so little compute goes to padding, and the
    composition changes every epoch. A loss that is one mean per batch then weighs the steps of short episodes
    more than random batches would (`OptimConfig.bucket_by_length`, bench/batch_weighting.py).
    """
    order = rng.permutation(index) if rng is not None else np.asarray(index)
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if bucket and rng is not None:
        run = batch_size * BUCKET_BATCHES
        chunks = []
        for s in range(0, len(order), run):
            part = order[s : s + run]
            part = part[np.argsort(demos.lengths[part], kind="stable")]
            chunks += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for chunk in chunks:
        yield make_batch(demos, chunk, pairs)
