"""Checkpoints: model, optimizer, epoch, RNG states, config and history; atomic, checksummed, no pickle.

Saved with ``torch.save`` of tensors and plain data, loaded with ``weights_only=True`` (loading runs no
code). A sha256 of the file sits beside it; a flipped byte or a half-written file is a one-line error.

Saving never leaves a directory that fails to load where a good checkpoint was: the new file is written
and fsynced under a temporary name; the checksum file is first rewritten to name both the checkpoint in
place and the new one, then the new file is renamed over the old, then the checksum file is rewritten
to name only the new one. Each step is one atomic rename, so a crash (or a full disk) at any point leaves
the old checkpoint or the new one, with a checksum that verifies it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import torch

FILE = "checkpoint.pt"
SIDE = FILE + ".sha256"  # the sha256 of the checkpoint (two digests while a save replaces it)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: one line naming the file."""


def save(directory: str | Path, state: dict[str, Any]) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path, side = d / FILE, d / SIDE
    token = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"  # unique on a folder shared by machines
    tmp = d / f".{FILE}.{token}.tmp"
    side_tmp = d / f".{SIDE}.{token}.tmp"
    try:
        torch.save(state, tmp)
        digest = _digest(tmp)
        _fsync(tmp)
        if path.is_file():  # a window where either file verifies (see the module docstring)
            _write_synced(side_tmp, [digest, *_current_digests(path, side)])
            os.replace(side_tmp, side)
        os.replace(tmp, path)
        _write_synced(side_tmp, [digest])
        os.replace(side_tmp, side)
        with contextlib.suppress(OSError):  # the renames made durable (not every file system syncs folders)
            _fsync(d)
    except BaseException:
        tmp.unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
        raise
    return path


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _current_digests(path: Path, side: Path) -> list[str]:
    """The digest(s) that verify the checkpoint now in place (computed when it has no checksum file)."""
    listed = side.read_text().split() if side.is_file() else []
    return listed or [_digest(path)]


def _write_synced(path: Path, digests: list[str]) -> None:
    with open(path, "w") as f:
        f.write("".join(f"{x}\n" for x in digests))
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve(path: str | Path) -> Path:
    """The checkpoint file of a path: the file itself, a checkpoint folder's file, or a run folder's
    (``RUN/checkpoint/checkpoint.pt``)."""
    p = Path(path)
    if not p.is_dir():
        return p
    if not (p / FILE).exists() and (p / "checkpoint" / FILE).is_file():
        return p / "checkpoint" / FILE
    return p / FILE


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = resolve(path)
    if not p.is_file():
        if p.is_dir():
            raise CheckpointError(f"{p}: a folder where a checkpoint file should be")
        if Path(path).is_dir():
            raise CheckpointError(f"{path}: no checkpoint in this folder (looked for {FILE} in it and in its "
                                  "checkpoint/)")
        raise CheckpointError(f"{p}: no checkpoint there")
    side = p.with_name(p.name + ".sha256")
    data = p.read_bytes()
    if side.is_file() and hashlib.sha256(data).hexdigest() not in side.read_text().split():
        raise CheckpointError(f"{p}: checksum mismatch (corrupted or half-written checkpoint)")
    try:  # the bytes just verified, not the path again (a concurrent save may have replaced it since)
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # damaged zip, or something that is not a checkpoint
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "model" not in state:
        raise CheckpointError(f"{p}: not an attention-tuner checkpoint")
    return state


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume from a checkpoint of another configuration. The budgets, epochs, training seconds or
    environment steps, may differ (a run can be extended), and so may the device (a run started on a GPU can
    go on on the CPU, and back: the same run, though not bit for bit the uninterrupted one)."""
    a, b = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    a.pop("device", None)
    b.pop("device", None)
    for section, budget in (("optim", "epochs"), ("optim", "time_budget_s"), ("rl", "env_steps")):
        a.get(section, {}).pop(budget, None)
        b.get(section, {}).pop(budget, None)
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        diff = sorted(k for k in set(_flat(a)) | set(_flat(b)) if _flat(a).get(k) != _flat(b).get(k))
        raise CheckpointError(f"{resolve(path)}: saved by another configuration (differs in {', '.join(diff[:5])}); "
                              "a new run needs another run folder (--out), or delete this one")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
