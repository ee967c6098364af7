"""Checkpoints: model, optimizer, epoch, RNG states, config and history; atomic, checksummed, no pickle.

Saved with ``torch.save`` of tensors and plain data, loaded with ``weights_only=True`` (loading runs no
code). A sha256 of the file sits beside it; a flipped byte or a half-written file is a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

FILE = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: one line naming the file."""


def save(directory: str | Path, state: dict[str, Any]) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / FILE
    tmp = d / f".{FILE}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    side_tmp = d / f".{FILE}.sha256.{os.getpid()}.tmp"
    side_tmp.write_text(digest + "\n")
    os.replace(tmp, path)  # the checkpoint first, then its checksum: a mismatch means "not finished"
    os.replace(side_tmp, d / f"{FILE}.sha256")
    return path


def resolve(path: str | Path) -> Path:
    p = Path(path)
    return p / FILE if p.is_dir() else p


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = resolve(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no checkpoint there")
    side = p.with_name(p.name + ".sha256")
    data = p.read_bytes()
    if side.is_file() and side.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise CheckpointError(f"{p}: checksum mismatch (corrupted or half-written checkpoint)")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # damaged zip, or something that is not a checkpoint
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{p}: not an attention-tuner checkpoint")
    return state


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume from a checkpoint of another configuration (the epoch count may differ)."""
    a, b = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    a.get("optim", {}).pop("epochs", None)
    b.get("optim", {}).pop("epochs", None)
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        diff = sorted(k for k in set(_flat(a)) | set(_flat(b)) if _flat(a).get(k) != _flat(b).get(k))
        raise CheckpointError(f"{resolve(path)}: saved by another configuration (differs in {', '.join(diff[:5])})")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
