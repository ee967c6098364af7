"""Look at a task: an animated GIF of one expert episode, with the frames the expert recalls marked."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

import memory_tasks
from memory_tasks.gridworld import render_batch

SCALE = 3  # 84 px observations drawn at 252 px
PANEL = 84 * SCALE
STRIP = 28


def episode_frames(episode: memory_tasks.Episode, style: str, actions: tuple[str, ...] = ()) -> list[Image.Image]:
    """One picture per step: the current view, the latest recalled earlier view, and a timeline; ``actions``
    names the actions by index (else their numbers are shown)."""
    pixels = render_batch(episode.symbolic, style)  # (T, 84, 84, 3)
    T = episode.length
    recalled = [episode.pairs[episode.pairs[:, 1] == t, 0] for t in range(T)]
    frames = []
    for t in range(T):
        canvas = Image.new("RGB", (2 * PANEL + 12, PANEL + STRIP + 36), (24, 24, 24))
        draw = ImageDraw.Draw(canvas)
        canvas.paste(Image.fromarray(pixels[t]).resize((PANEL, PANEL), Image.Resampling.NEAREST), (0, 18))
        act = int(episode.actions[t])
        draw.text((4, 3), f"t={t}  action: {actions[act] if act < len(actions) else act}", fill=(230, 230, 230))
        earlier = [int(p) for p in recalled[t] if p < t]
        if earlier:
            p = earlier[-1]
            canvas.paste(Image.fromarray(pixels[p]).resize((PANEL, PANEL), Image.Resampling.NEAREST), (PANEL + 12, 18))
            draw.rectangle([PANEL + 10, 16, 2 * PANEL + 11, PANEL + 19], outline=(255, 60, 60), width=2)
            more = f" (+{len(earlier) - 1} more)" if len(earlier) > 1 else ""
            draw.text((PANEL + 16, 3), f"recalls t={p}{more}", fill=(255, 110, 110))
        else:
            draw.text((PANEL + 16, 3), "recalls only the current frame", fill=(150, 150, 150))
        _timeline(draw, T, t, set(earlier), top=PANEL + 26, width=2 * PANEL + 12)
        frames.append(canvas)
    return frames


def _timeline(draw: ImageDraw.ImageDraw, T: int, t: int, recalled: set[int], top: int, width: int) -> None:
    """Every step as a cell: past grey, current white, recalled red, future dark."""
    cell = max(1.0, (width - 8) / T)
    for s in range(T):
        x0 = 4 + s * cell
        colour = (255, 60, 60) if s in recalled else (240, 240, 240) if s == t else (
            (110, 110, 110) if s < t else (50, 50, 50))
        draw.rectangle([x0, top, x0 + max(cell - 1, 1), top + STRIP - 8], fill=colour)


def write_gif(task: str, seed: int, out: str | Path, kwargs: dict | None = None, fps: int = 4) -> Path:
    """Roll out the expert of ``task`` on ``seed`` and write the GIF atomically; returns its path."""
    env_id = memory_tasks.resolve_task(task)
    env = memory_tasks.make(env_id, obs_mode="symbolic", **(kwargs or {}))
    episode = memory_tasks.rollout(env, seed)
    frames = episode_frames(episode, memory_tasks.PIXEL_STYLE[env_id], memory_tasks.ACTION_NAMES[env_id])
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise ValueError(f"output folder does not exist: {out.parent}")
    from attention_tuner.demos import atomic_target

    with atomic_target(out, ".tmp.gif") as tmp:  # a failed or killed write never leaves a partial GIF
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps),
                       loop=0)
    return out


def summary(episode: memory_tasks.Episode) -> dict[str, float]:
    """Numbers that describe one expert episode's memory demands."""
    non_self = episode.pairs[episode.pairs[:, 0] != episode.pairs[:, 1]]
    gaps = non_self[:, 1] - non_self[:, 0]
    return {"length": episode.length, "success": float(episode.success), "non_self_pairs": len(non_self),
            "longest_gap": int(gaps.max()) if len(gaps) else 0, "return": episode.total_return}

