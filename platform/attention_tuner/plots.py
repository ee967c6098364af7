"""Pictures of a trial: the expert attention matrix beside each supervised head's, and learning curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from attention_tuner import datasets, losses  # noqa: E402
from attention_tuner.demos import atomic_target  # noqa: E402


def save_png(fig, path: Path) -> Path:
    """Write a figure atomically (a temporary name, then a rename) and close it, also when writing fails."""
    try:
        with atomic_target(path, ".tmp.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def has_recall(pairs: np.ndarray) -> bool:
    """Whether an episode's expert pairs (rows (p, q)) recall an earlier step: some p != q, not only self-pairs."""
    pairs = np.asarray(pairs).reshape(-1, 2)
    return bool(np.any(pairs[:, 0] != pairs[:, 1]))


def recall_episode(pairs: list[np.ndarray], candidates) -> int:
    """The first of ``candidates`` (episode indices, at least one) whose pairs recall an earlier step
    (`has_recall`): its attention picture says something about memory. Else the first candidate."""
    candidates = [int(i) for i in candidates]
    return next((i for i in candidates if has_recall(pairs[i])), candidates[0])


@torch.no_grad()
def attention_figure(model, encode, demos: datasets.Demonstrations, episode: int, path: str | Path,
                     title: str = "", supervised: tuple = ()) -> Path:
    """Expert matrix E (observation rows) beside the attention of every head of ``model``, for one episode.

    Heads the memory loss trains are marked "(supervised)" when ``supervised`` names them.
    """
    obs = encode(demos.episode_obs(episode)[None])
    actions = torch.from_numpy(demos.episode_actions(episode)[None]).to(obs.device)
    heads = [(layer, h) for layer in range(model.n_layers) for h in range(model.n_heads)]
    was = model.training
    model.eval()
    _, attn = model(obs, actions, probe=heads)  # every head's attention, supervised or not
    model.train(was)
    T = actions.shape[1]
    E = losses.expert_matrix([demos.pairs[episode]], T)[0].numpy()[0::2, 0::2]  # (T, T) obs query x obs key
    panels = [("expert pairs", E)]
    for s, (layer, head) in enumerate(heads):
        mark = " (supervised)" if (layer, head) in supervised else ""
        panels.append((f"layer {layer} head {head}{mark}", attn[0, s].float().cpu().numpy()[0::2, 0::2]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1, 4.2), squeeze=False,
                             layout="constrained")  # title, panels and colour bar close together
    for i, (ax, (name, m)) in enumerate(zip(axes[0], panels, strict=True)):
        im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # time steps: no ticks between them
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.set_xlabel("recalled step p (key)")
        if i == 0:
            ax.set_ylabel("decision step q (query)")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.9, pad=0.01, label="attention on observation tokens")
    fig.suptitle(title or f"episode seed {int(demos.seeds[episode])}: expert vs learned attention")
    return save_png(fig, Path(path))


def learning_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Losses, accuracies and success rate against epochs."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4), layout="constrained")
    for key, style in (("train/action_loss", "-"), ("val/action_loss", "--"), ("train/memory_loss", ":")):
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            ax1.plot(*zip(*pts, strict=True), style, label=key)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (nats)")
    ax1.set_title("losses")
    ax1.legend()
    what = {"val/expert_attention_mass": " (every step, all expert keys)",
            "val/recall_attention_mass": " (decision steps, recalled frames)"}
    dashes: list[tuple[str, str | tuple[int, tuple[int, int]]]] = [
        ("train/accuracy", "-"), ("val/accuracy", "--"), ("val/decision_accuracy", "-."),
        ("val/expert_attention_mass", ":"), ("val/recall_attention_mass", (0, (1, 4))), ("eval/success_rate", "-")]
    for key, dash in dashes:
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            ax2.plot(*zip(*pts, strict=True), linestyle=dash, marker="o" if key.startswith("eval/") else None,
                     label=key + what.get(key, ""))
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("fraction")
    ax2.set_title("accuracy, attention on expert keys, success")
    ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the lines, never over them
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    fig.suptitle(title)
    return save_png(fig, Path(path))


def rl_learning_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """The RL baseline: training return and closed-loop success against environment steps."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((ax1, "train/episode_return_mean", "mean return of training episodes"),
                           (ax2, "eval/success_rate", "success rate (held-out seeds, greedy)")):
        pts = [(h["perf/env_steps"], h[key]) for h in history if key in h and "perf/env_steps" in h]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-" if key.startswith("eval/") else "-")
        ax.set_xlabel("environment steps")
        ax.set_title(label)
    ax2.set_ylim(-0.02, 1.02)
    fig.suptitle(title)
    return save_png(fig, Path(path))
