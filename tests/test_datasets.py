"""Loading into training-ready form: subsets, noise, evaluation seeds, batches (attention_tuner.datasets)."""

from __future__ import annotations

import numpy as np
import pytest

from attention_tuner import datasets, demos
from attention_tuner.config import EVAL_SEED_BASE, NoiseConfig


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = demos.generate("Hallway", {"length": 3}, episodes=40, seed=0,
                          root=tmp_path_factory.mktemp("ds"), actors=0, progress=False)
    return datasets.load(path)


def test_annotation_subsets_are_nested_and_sized():
    seeds = np.arange(10_000)
    masks = {f: datasets.annotated_subset(seeds, f, seed=3) for f in (0.001, 0.01, 0.1, 1.0)}
    assert [int(m.sum()) for m in masks.values()] == [10, 100, 1000, 10_000]
    assert np.all(masks[0.01][masks[0.001]]) and np.all(masks[0.1][masks[0.01]])
    assert not datasets.annotated_subset(seeds, 0.0, seed=3).any()
    assert datasets.annotated_subset(np.arange(50), 0.001, seed=0).sum() == 1  # f > 0 keeps at least one
    again = datasets.annotated_subset(seeds, 0.01, seed=3)
    np.testing.assert_array_equal(again, masks[0.01])
    assert not np.array_equal(datasets.annotated_subset(seeds, 0.01, seed=4), masks[0.01])
    # The subset depends on the episodes' seeds, not on where they are stored.
    perm = np.random.default_rng(0).permutation(10_000)
    np.testing.assert_array_equal(datasets.annotated_subset(seeds[perm], 0.01, 3), masks[0.01][perm])


def test_annotations_among_some_episodes_take_the_fraction_of_those(demo):
    among = np.arange(0, len(demo), 2)
    kept = {}
    for f in (0.01, 0.2, 0.5, 1.0):
        pairs = datasets.annotated_pairs(demo, f, seed=5, noise=NoiseConfig(), among=among)
        kept[f] = {i for i, p in enumerate(pairs) if p is not None}
        assert kept[f] <= set(among.tolist()) and len(kept[f]) == max(1, round(f * len(among)))
    assert kept[0.01] <= kept[0.2] <= kept[0.5] <= kept[1.0]  # nested, as without `among`


def test_no_noise_gives_exactly_the_expert_pairs(demo):
    pairs = datasets.annotated_pairs(demo, 1.0, seed=0, noise=NoiseConfig())
    for got, expert in zip(pairs, demo.pairs, strict=True):
        np.testing.assert_array_equal(got, expert)


def test_noise_is_deterministic_causal_and_leaves_the_data_alone(demo):
    before = [p.copy() for p in demo.pairs]
    noise = NoiseConfig(drop=0.3, shift=2, spurious=0.5)
    a = datasets.annotated_pairs(demo, 1.0, seed=1, noise=noise)
    b = datasets.annotated_pairs(demo, 1.0, seed=1, noise=noise)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    changed = 0
    for got, expert in zip(a, before, strict=True):
        assert np.all(got[:, 0] <= got[:, 1]) and np.all(got[:, 0] >= 0)
        T = int(expert[:, 1].max()) + 1
        assert set(got[got[:, 0] == got[:, 1], 1].tolist()) == set(range(T))  # self-pairs kept
        changed += not np.array_equal(got, expert)
    assert changed > 0
    for p, q in zip(demo.pairs, before, strict=True):
        np.testing.assert_array_equal(p, q)


def test_drop_all_keeps_only_self_pairs(demo):
    got = datasets.annotated_pairs(demo, 1.0, seed=0, noise=NoiseConfig(drop=1.0))
    assert all(np.all(p[:, 0] == p[:, 1]) for p in got)


def test_eval_seeds_are_disjoint_from_every_training_seed(demo):
    ev = datasets.eval_seeds(100)
    assert min(ev) >= EVAL_SEED_BASE > demo.seeds.max()
    with pytest.raises(ValueError, match="evaluation"):
        demos.check_request(demos.Request("Hallway", {}, 10, EVAL_SEED_BASE))


def test_split_is_fixed_and_disjoint(demo):
    train, val = datasets.split(demo, 0.25)
    assert len(val) == 10 and len(train) == 30 and not set(train) & set(val)
    t2, v2 = datasets.split(demo, 0.25)
    np.testing.assert_array_equal(val, v2)


def test_batches_pad_only_to_their_longest_episode(demo):
    pairs = datasets.annotated_pairs(demo, 0.5, seed=0, noise=NoiseConfig())
    index = np.arange(len(demo))
    seen = []
    for batch in datasets.batches(demo, index, pairs, batch_size=8, rng=np.random.default_rng(0)):
        lengths = demo.lengths[batch.index]
        assert batch.obs.shape[:2] == (len(batch.index), lengths.max()) and batch.obs.dtype == np.uint8
        np.testing.assert_array_equal(batch.mask.sum(1), lengths)
        assert not batch.obs[~batch.mask].any() and not batch.actions[~batch.mask].any()
        for b, i in enumerate(batch.index):
            np.testing.assert_array_equal(batch.obs[b, : lengths[b]], demo.episode_obs(i))
        assert batch.annotated.sum() == sum(pairs[i] is not None for i in batch.index)
        seen.extend(batch.index.tolist())
    assert sorted(seen) == list(range(len(demo)))


def test_length_bucketing_cuts_padding_and_still_covers_every_episode(demo):
    pairs = datasets.annotated_pairs(demo, 1.0, seed=0, noise=NoiseConfig())
    index = np.arange(len(demo))

    def padded(bucket):
        out, seen = 0, []
        for b in datasets.batches(demo, index, pairs, 4, rng=np.random.default_rng(3), bucket=bucket):
            out += b.mask.size
            seen += b.index.tolist()
        assert sorted(seen) == index.tolist()
        return out

    assert padded(True) < padded(False)
    a = [b.index.tolist() for b in datasets.batches(demo, index, pairs, 4, rng=np.random.default_rng(3))]
    b = [b.index.tolist() for b in datasets.batches(demo, index, pairs, 4, rng=np.random.default_rng(3))]
    c = [b.index.tolist() for b in datasets.batches(demo, index, pairs, 4, rng=np.random.default_rng(4))]
    assert a == b and a != c  # seeded, and different every epoch


def test_random_batches_are_the_shuffled_episodes_cut_in_order(demo):
    """bucket=False: the epoch's permutation cut into consecutive batches (the paper code's random batches)."""
    pairs = datasets.annotated_pairs(demo, 1.0, seed=0, noise=NoiseConfig())
    index = np.arange(len(demo))
    got = [b.index.tolist() for b in datasets.batches(demo, index, pairs, 4, rng=np.random.default_rng(3),
                                                       bucket=False)]
    order = np.random.default_rng(3).permutation(index).tolist()
    assert got == [order[s : s + 4] for s in range(0, len(order), 4)]
