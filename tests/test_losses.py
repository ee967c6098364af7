"""Losses against hand-computed values; padding and unannotated episodes contribute nothing."""

import math

import numpy as np
import pytest
import torch

from attention_tuner.config import MEMORY_SPLITS, MEMORY_VARIANTS
from attention_tuner.losses import (
    EPS,
    action_loss,
    earlier_keys,
    expert_attention_mass,
    expert_matrix,
    expert_rows,
    memory_loss,
    recall_rows,
)
from attention_tuner.model import AttentionTuner

# One episode of T = 2 steps (tokens o0 a0 o1 a1). Pairs (p, q): (0, 0), (0, 1), (1, 1)
# -> E[0, 0] = E[2, 0] = E[2, 2] = 1. A causal attention matrix with hand-picked rows:
ATT = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.3, 0.7, 0.0, 0.0],
        [0.5, 0.2, 0.3, 0.0],
        [0.1, 0.2, 0.3, 0.4],
    ]
)
PAIRS = np.array([[0, 0], [0, 1], [1, 1]])
ln = math.log


HI = float(np.float32(1 - EPS))  # the loss clamps float32 probabilities to [EPS, HI]


def nlog(p):  # -log p, p clamped as the loss does
    return -ln(min(max(p, EPS), HI))


def bce(p, y):
    return y * nlog(p) - (1 - y) * ln(1 - min(max(p, EPS), HI))


def test_expert_matrix():
    E = expert_matrix([PAIRS, None, np.zeros((0, 2), int)], T_max=3)
    assert E.shape == (3, 6, 6) and E.dtype == torch.float32
    expected = torch.zeros(6, 6)
    expected[0, 0] = expected[2, 0] = expected[2, 2] = 1
    assert torch.equal(E[0], expected)
    assert E[1:].sum() == 0


@pytest.mark.parametrize("pairs", [[[1, 0]], [[0, 3]], [[-1, 1]]])
def test_expert_matrix_rejects_bad_pairs(pairs):
    with pytest.raises(ValueError, match="0 <= p <= q"):
        expert_matrix([np.array(pairs)], T_max=3)


def test_action_loss_by_hand_and_padding_ignored():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]]])  # (1, 3, 3)
    actions = torch.tensor([[0, 2, -100]])  # step 2 is padding, with an id outside the range
    mask = torch.tensor([[True, True, False]])
    loss, acc = action_loss(logits, actions, mask)
    ce0 = -2.0 + ln(math.exp(2) + 1 + math.exp(-1))
    ce1 = -0.0 + ln(1 + math.e + 1)
    assert loss.item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    assert acc.item() == pytest.approx(0.5)  # step 0 right (argmax 0), step 1 wrong (argmax 1)
    logits2 = logits.clone()
    logits2[0, 2] = torch.tensor([-9.0, 30.0, 1.0])
    loss2, acc2 = action_loss(logits2, torch.tensor([[0, 2, 1]]), mask)
    assert loss2.item() == loss.item() and acc2.item() == acc.item()


def test_memory_loss_reference_variant_by_hand():
    attn, E = ATT[None, None], expert_matrix([PAIRS], 2)
    got = memory_loss(attn, E, torch.ones(1, 2, dtype=torch.bool), torch.tensor([True]))
    total = sum(bce(ATT[i, j].item(), E[0, i, j].item()) for i in range(4) for j in range(4))
    manual = (-ln(0.7) - ln(0.3)) + (-ln(0.5) - ln(0.8) - ln(0.3)) + (-ln(0.9) - ln(0.8) - ln(0.7) - ln(0.6))
    assert total == pytest.approx(manual, abs=2e-5)  # the other 7 cells are ~0 (p clamped to EPS)
    assert got.item() == pytest.approx(total / 16, rel=1e-6)


def test_memory_loss_decision_rows_by_hand():
    attn, E = ATT[None, None], expert_matrix([PAIRS], 2)
    got = memory_loss(attn, E, torch.ones(1, 2, dtype=torch.bool), torch.tensor([True]), variant="decision_rows")
    # rows o0 (key 0) and o1 (keys 0, 1, 2): 4 cells
    expected = (nlog(1.0) + nlog(0.5) + nlog(0.8) + nlog(0.3)) / 4
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_memory_loss_sums_heads_and_divides_by_their_number():
    other = ATT.clone()
    other[2] = torch.tensor([0.1, 0.1, 0.8, 0.0])
    attn, E = torch.stack([ATT, other])[None], expert_matrix([PAIRS], 2)  # (1, 2, 4, 4)
    m, ann = torch.ones(1, 2, dtype=torch.bool), torch.tensor([True])
    one = [memory_loss(attn[:, [h]], E, m, ann, variant="decision_rows").item() for h in range(2)]
    both = memory_loss(attn, E, m, ann, variant="decision_rows").item()
    assert both == pytest.approx((one[0] + one[1]) / 2, rel=1e-6)
    assert one[1] == pytest.approx((nlog(1.0) + nlog(0.1) + nlog(0.9) + nlog(0.8)) / 4, rel=1e-6)


def test_memory_loss_even_split_by_hand():
    # Query o1 is token 2: its keys 0..2 are cut into chunks of ceil(3 / 2) = 2 tokens: keys {0, 1} -> head 0,
    # key 2 -> head 1. Query o0 (token 0): chunk size 1, key 0 -> head 0. So head 0 targets E[0,0], E[2,0],
    # head 1 targets E[2,2] only (and 0 at token 0's only key, which it must attend to: -log(EPS)).
    attn, E = torch.stack([ATT, ATT])[None], expert_matrix([PAIRS], 2)
    got = memory_loss(attn, E, torch.ones(1, 2, dtype=torch.bool), torch.tensor([True]),
                      variant="decision_rows", split="even")
    head0 = bce(1.0, 1) + bce(0.5, 1) + bce(0.2, 0) + bce(0.3, 0)
    head1 = bce(1.0, 0) + bce(0.5, 0) + bce(0.2, 0) + bce(0.3, 1)
    assert head1 > 13  # the -log(EPS) cell
    assert got.item() == pytest.approx((head0 / 4 + head1 / 4) / 2, rel=1e-6)


def _two_episodes():
    """Episode 0 annotated, 2 real steps + 1 padded; episode 1 unannotated, 3 real steps. T = 3."""
    g = torch.Generator().manual_seed(0)
    attn = torch.zeros(2, 1, 6, 6)
    attn[0, 0, :4, :4] = ATT
    attn[0, 0, 4:] = torch.softmax(torch.randn(2, 6, generator=g), -1)  # padded rows: anything
    causal = torch.ones(6, 6).triu(1).bool()
    attn[1, 0] = torch.softmax(torch.randn(6, 6, generator=g).masked_fill(causal, float("-inf")), -1)
    E = expert_matrix([PAIRS, None], 3)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    return attn, E, mask, torch.tensor([True, False])


@pytest.mark.parametrize("variant", MEMORY_VARIANTS)  # every variant and split, those added later too
@pytest.mark.parametrize("split", MEMORY_SPLITS)
def test_padding_and_unannotated_episodes_contribute_nothing(variant, split):
    attn, E, mask, ann = _two_episodes()
    base = memory_loss(attn, E, mask, ann, variant, split)
    single = memory_loss(ATT[None, None], E[:1, :4, :4], mask[:1, :2], ann[:1], variant, split)
    assert base.item() == pytest.approx(single.item(), rel=1e-6)
    attn2, E2 = attn.clone(), E.clone()
    attn2[1] = torch.eye(6)  # a different unannotated episode
    E2[1, 4, 0] = E2[0, 4, 2] = 1  # targets on the unannotated episode and on the padded step
    attn2[0, 0, 5] = torch.full((6,), 1 / 6)  # a different padded row
    assert memory_loss(attn2, E2, mask, ann, variant, split).item() == base.item()


def test_expert_attention_mass_by_hand():
    attn, E, mask, ann = _two_episodes()
    # annotated rows with expert keys: o0 -> mass 1.0 on key 0; o1 -> 0.5 + 0.3 on keys 0, 2
    assert expert_attention_mass(attn, E, mask, ann).item() == pytest.approx(0.9)
    uniform = (torch.ones(6, 6).tril() / torch.arange(1, 7)[:, None]).expand(2, 1, 6, 6)
    two = torch.cat([attn, uniform], 1)  # a second head, uniform: o0 -> 1, o1 -> 2/3
    assert expert_attention_mass(two, E, mask, ann).item() == pytest.approx((1.0 + (0.8 + 2 / 3) / 2) / 2)
    assert math.isnan(expert_attention_mass(attn, E, mask, torch.tensor([False, False])).item())
    # the rows that recall an earlier frame: o1 only (o0's one key is itself)
    recall = recall_rows(E, mask, ann)
    assert recall.nonzero().tolist() == [[0, 2]] and expert_rows(E, mask, ann).nonzero().tolist() == [[0, 0], [0, 2]]
    assert expert_attention_mass(attn, E, mask, ann, recall).item() == pytest.approx(0.8)
    # on the recalled frame only (key 0, not o1 itself): 0.5; the uniform head 1/3
    earlier = earlier_keys(E)
    assert expert_attention_mass(attn, earlier, mask, ann, recall).item() == pytest.approx(0.5)
    assert expert_attention_mass(two, earlier, mask, ann, recall).item() == pytest.approx((0.5 + 1 / 3) / 2)


def test_no_annotated_episode_gives_zero_loss_and_the_action_gradients_exactly():
    torch.manual_seed(0)
    net = AttentionTuner(obs_mode="symbolic", n_actions=7, d_model=32, n_layers=2, n_heads=2, d_ff=64,
                         dropout=0.0, supervised=[(1, 0), (0, 1)])
    obs = torch.randint(0, 11, (3, 5, 7, 7, 3), dtype=torch.uint8)
    act = torch.randint(0, 7, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    E = expert_matrix([np.array([[0, 2], [2, 2]]), None, np.array([[1, 3]])], 5)
    ann = torch.zeros(3, dtype=torch.bool)

    def grads(with_memory):
        net.zero_grad()
        logits, attn = net(obs, act)
        loss = action_loss(logits, act, mask)[0]
        if with_memory:
            mem = memory_loss(attn, E, mask, ann)
            assert mem.item() == 0.0
            loss = loss + 10.0 * mem
        loss.backward()
        return [p.grad.clone() for p in net.parameters()]

    for g_total, g_action in zip(grads(True), grads(False), strict=True):
        assert torch.equal(g_total, g_action)


def test_memory_loss_pulls_the_head_towards_the_expert():
    torch.manual_seed(0)
    net = AttentionTuner(obs_mode="symbolic", n_actions=7, d_model=32, n_layers=2, n_heads=2, d_ff=64,
                         dropout=0.0, supervised=[(1, 1)])
    obs = torch.randint(0, 11, (4, 6, 7, 7, 3), dtype=torch.uint8)
    act = torch.randint(0, 7, (4, 6))
    mask, ann = torch.ones(4, 6, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    E = expert_matrix([np.array([[0, q] for q in range(6)])] * 4, 6)  # always recall the first frame
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    mass = []
    for _ in range(15):
        _, attn = net(obs, act)
        mass.append(expert_attention_mass(attn, E, mask, ann).item())
        opt.zero_grad()
        memory_loss(attn, E, mask, ann, variant="decision_rows").backward()
        opt.step()
    assert mass[-1] > 0.9 > mass[0]


@pytest.mark.parametrize("kw, match", [(dict(variant="rows"), "variant"), (dict(split="half"), "split")])
def test_memory_loss_rejects_bad_options(kw, match):
    attn, E, mask, ann = _two_episodes()
    with pytest.raises(ValueError, match=match):
        memory_loss(attn, E, mask, ann, **kw)


def test_memory_loss_rejects_mismatched_shapes():
    attn, E, mask, ann = _two_episodes()
    with pytest.raises(ValueError, match="shapes"):
        memory_loss(attn, E[:, :4, :4], mask, ann)
    with pytest.raises(ValueError, match="shapes"):
        memory_loss(attn, E, mask[:, :2], ann)
