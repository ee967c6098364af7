"""Observations as the model sees them: stored symbolic codes -> the trial's observation mode, per batch.

Datasets and evaluation environments carry the compact symbolic codes (uint8, 147 bytes a step); in pixel
mode each batch is rendered on the device by indexing a table of 12x12 tiles (``memory_tasks.gridworld``),
which gives exactly the environment's own pixel observations.
"""

from __future__ import annotations

import numpy as np
import torch

import memory_tasks
from memory_tasks.gridworld import slot_map, tile_table


class ObservationEncoder:
    """Callable: (..., 7, 7, 3) uint8 codes (numpy or tensor) -> uint8 tensor on ``device`` for the model."""

    def __init__(self, task: str, obs_mode: str, device: torch.device | str = "cpu"):
        self.obs_mode, self.device = obs_mode, torch.device(device)
        if obs_mode == "pixels":
            style = memory_tasks.PIXEL_STYLE[memory_tasks.resolve_task(task)]
            self.table = torch.from_numpy(tile_table(style)).to(self.device)  # (2, 11, 6, 3, 12, 12, 3)
            self.slots = torch.from_numpy(slot_map(style)).to(self.device)  # (7, 7)

    def __call__(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(codes).to(self.device, non_blocking=True)
        if self.obs_mode == "symbolic":
            return c
        lead = c.shape[:-3]
        c = c.reshape(-1, 7, 7, 3).long()
        tiles = self.table[self.slots, c[..., 0], c[..., 1], c[..., 2]]  # (N, x, y, 12, 12, 3)
        img = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, 84, 84, 3)  # (N, 84, 84, 3): rows are y
        return img.reshape(*lead, 84, 84, 3)
