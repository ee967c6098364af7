"""AttentionTuner model: causality, attention probabilities, cached decoding, sizes, argument checks."""

import math

import pytest
import torch

import attention_tuner.model as model_module
from attention_tuner.model import DEDUP_MIN, OBS_SHAPES, AttentionTuner, encode_unique, unique_rows
from conftest import torch_threads

A = 7  # MiniGrid's action count


def small(obs_mode="symbolic", supervised=((1, 1),), seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(obs_mode=obs_mode, n_actions=A, d_model=32, n_layers=2, n_heads=2, d_ff=64, supervised=supervised)
    return AttentionTuner(**{**args, **kw}).eval()


def batch(B, T, obs_mode="symbolic", seed=0):
    g = torch.Generator().manual_seed(seed)
    hi = 11 if obs_mode == "symbolic" else 256  # symbolic codes of any of the three fields
    obs = torch.randint(0, hi, (B, T, *OBS_SHAPES[obs_mode]), generator=g).to(torch.uint8)
    return obs, torch.randint(0, A, (B, T), generator=g)


@pytest.mark.parametrize("obs_mode, lo, hi", [("symbolic", 14.3e6, 14.7e6), ("pixels", 14.3e6, 14.7e6)])
def test_reference_size_parameter_count(obs_mode, lo, hi):
    net = AttentionTuner(obs_mode=obs_mode, n_actions=A, supervised=[(1, 1)])
    assert lo <= net.num_parameters() <= hi


def test_shapes_and_no_supervision_returns_none():
    obs, act = batch(3, 5)
    logits, attn = small()(obs, act)
    assert logits.shape == (3, 5, A) and attn.shape == (3, 1, 10, 10) and attn.dtype == torch.float32
    logits, attn = small(supervised=())(obs, act)
    assert attn is None and logits.shape == (3, 5, A)


def test_causal_outputs_at_t_ignore_everything_after_t():
    net = small(supervised=((0, 0), (1, 1)))
    obs, act = batch(2, 8)
    logits, attn = net(obs, act)
    for t in (0, 3, 6):
        obs2, act2 = obs.clone(), act.clone()
        obs2[:, t + 1 :] = torch.randint(0, 11, obs2[:, t + 1 :].shape, dtype=torch.uint8)
        act2[:, t:] = (act2[:, t:] + 1) % A  # a_t comes after o_t: the logits for a_t cannot see it
        logits2, attn2 = net(obs2, act2)
        torch.testing.assert_close(logits2[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-6)
        # attention rows of tokens up to o_t are unchanged as well
        torch.testing.assert_close(attn2[:, :, : 2 * t + 1], attn[:, :, : 2 * t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(logits2[:, t + 1 :], logits[:, t + 1 :])  # the change did reach later steps


@pytest.mark.parametrize("pad_action", [0, -100])
def test_right_padding_changes_nothing_and_makes_no_nan(pad_action):
    net = small(supervised=((0, 1), (1, 0)))
    obs, act = batch(2, 5)
    logits, attn = net(obs, act)
    pad_obs = torch.zeros(2, 4, *OBS_SHAPES["symbolic"], dtype=torch.uint8)
    pad_act = torch.full((2, 4), pad_action)
    logits_p, attn_p = net(torch.cat([obs, pad_obs], 1), torch.cat([act, pad_act], 1))
    assert torch.isfinite(logits_p).all() and torch.isfinite(attn_p).all()
    torch.testing.assert_close(logits_p[:, :5], logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(attn_p[:, :, :10, :10], attn, rtol=0, atol=1e-6)


def test_attention_rows_are_causal_probabilities():
    net = small(supervised=((0, 0), (1, 1), (1, 0)))
    logits, attn = net(*batch(2, 6))
    L = attn.shape[-1]
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, L))
    assert (attn.triu(diagonal=1) == 0).all()  # exactly zero above the diagonal


def test_supervised_order_and_mixed_fused_heads_match_all_fused():
    obs, act = batch(2, 6)
    net = small(supervised=((1, 1), (0, 0), (1, 0)))
    swapped = small(supervised=((0, 0), (1, 0), (1, 1)))
    fused = small(supervised=())
    swapped.load_state_dict(net.state_dict())
    fused.load_state_dict(net.state_dict())
    logits, attn = net(obs, act)
    logits_s, attn_s = swapped(obs, act)
    torch.testing.assert_close(attn_s, attn[:, [1, 2, 0]])  # returned in the order given
    # explicit + fused heads, reassembled in head order, give the all-fused model's outputs
    torch.testing.assert_close(logits, fused(obs, act)[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits_s, logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("probe", [((1, 1), (0, 0), (1, 0)), ((0, 1),), ((1, 0), (1, 1))])
@pytest.mark.parametrize("packed", [False, True])
def test_probed_heads_equal_the_same_heads_supervised(probe, packed, monkeypatch):
    """probe= returns the attention of heads no loss supervises, the vanilla model's included, as a model
    supervising them would, in the order given, and leaves the logits alone."""
    if packed:  # the packed path (wide models) too
        monkeypatch.setattr(model_module, "PACK_MIN_D_MODEL", 1)
    obs, act = batch(2, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    vanilla, other = small(supervised=()), small(supervised=((0, 1),))
    supervising = small(supervised=probe)
    for net in (other, supervising):
        net.load_state_dict(vanilla.state_dict())
    want_logits, want = supervising(obs, act, mask)
    for net in (vanilla, other):
        logits, attn = net(obs, act, mask, probe=probe)
        torch.testing.assert_close(attn, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(logits, want_logits, rtol=0, atol=1e-5)
    assert vanilla(obs, act, mask)[1] is None  # the probe is for that call only
    with pytest.raises(ValueError, match="probe has duplicate"):
        vanilla(obs, act, probe=((0, 0), (0, 0)))
    with pytest.raises(ValueError, match=r"probe \(layer, head\) \(2, 0\) out of range"):
        vanilla(obs, act, probe=((2, 0),))


def test_returned_attention_is_the_heads_softmax():
    net = small(supervised=((1, 1),))
    obs, act = batch(1, 4)
    seen = {}
    net.blocks[1].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    _, attn = net(obs, act)
    x = seen["x"][0]  # (L, C) input of layer 1
    C, hs = 32, 16
    W, b = net.blocks[1].qkv.weight, net.blocks[1].qkv.bias
    q = (x @ W[:C].T + b[:C])[:, hs:]  # head 1 of the query projection
    k = (x @ W[C : 2 * C].T + b[C : 2 * C])[:, hs:]
    s = (q @ k.T) / math.sqrt(hs)
    L = s.shape[0]
    expected = s.masked_fill(torch.ones(L, L).triu(1).bool(), float("-inf")).softmax(-1)
    torch.testing.assert_close(attn[0, 0], expected)


@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
@pytest.mark.parametrize("T", [1, 6, 13])
def test_incremental_decoding_equals_full_forward(obs_mode, T):
    net = small(obs_mode, supervised=((0, 1),))
    obs, act = batch(3, T, obs_mode, seed=T)
    logits, _ = net(obs, act)
    cache = net.new_cache(3, capacity=4)  # small first allocation: exercises the buffer growth
    steps = [net.step(cache, obs[:, t], None if t == 0 else act[:, t - 1]) for t in range(T)]
    assert cache.t == T and cache.length == 2 * T - 1
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_preallocated_cache_never_moves_and_equals_the_growing_cache(n_layers):
    """A cache with room for the whole episode is written in place (same storage every step), and decodes
    exactly what a cache that starts tiny and grows does, and what the full pass computes."""
    net = small(n_layers=n_layers, supervised=())
    T = 9
    obs, act = batch(4, T, seed=3)
    logits, _ = net(obs, act)
    static, growing = net.new_cache(4, capacity=2 * T), net.new_cache(4, capacity=1)
    ptrs = set()
    for t in range(T):
        prev = None if t == 0 else act[:, t - 1]
        a = net.step(static, obs[:, t], prev)
        b = net.step(growing, obs[:, t], prev)
        ptrs.add(tuple(buf.data_ptr() for buf in static.kv))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        torch.testing.assert_close(a, logits[:, t], rtol=0, atol=1e-5)
    assert len(ptrs) == 1 and static.allocated == 2 * T
    assert growing.allocated >= 2 * T - 1 and static.length == growing.length == 2 * T - 1


@pytest.mark.parametrize("B", [1, 3, 12])
def test_decoding_paths_for_few_and_many_rows_equal_the_full_pass(B):
    """Decoding picks its kernels by size: with few observations the second convolution goes through im2col,
    with many through conv2d. Every path decodes what the full pass computes."""
    from attention_tuner.model import IM2COL_MAX

    net = small(d_model=128, n_layers=2)
    assert 3 <= IM2COL_MAX < 12  # B = 1, 3 take the im2col path
    T = 6
    obs, act = batch(B, T, seed=B)
    logits, _ = net(obs, act)
    cache = net.new_cache(B, capacity=2 * T)
    with torch.inference_mode():
        for t in range(T):
            out = net.step(cache, obs[:, t], None if t == 0 else act[:, t - 1])
            torch.testing.assert_close(out, logits[:, t], rtol=0, atol=1e-5)


def test_decoding_in_inference_mode_with_increasing_and_shuffled_selects():
    """Evaluation's path: inference mode, finished rows dropped in place (increasing rows), then an
    arbitrary reordering (gathered), and every surviving row still equals the full pass."""
    net = small()
    obs, act = batch(5, 8, seed=5)
    logits, _ = net(obs, act)
    cache = net.new_cache(5, capacity=16)
    rows = torch.arange(5)
    with torch.inference_mode():
        for t in range(8):
            if t == 3:
                rows = rows[[0, 2, 3]]  # rows 1 and 4 finished: moved down in place
                cache.select(torch.tensor([0, 2, 3]))
            if t == 5:
                rows = rows[[2, 0]]
                cache.select(torch.tensor([2, 0]))
            out = net.step(cache, obs[rows, t], None if t == 0 else act[rows, t - 1])
            torch.testing.assert_close(out, logits[rows, t], rtol=0, atol=1e-5)
    assert cache.batch_size == 2 and cache.kv[0].shape[0] == 2


def test_cache_select_keeps_decoding_the_remaining_rows():
    net = small()
    obs, act = batch(3, 7)
    logits, _ = net(obs, act)
    cache = net.new_cache(3)
    for t in range(3):
        net.step(cache, obs[:, t], None if t == 0 else act[:, t - 1])
    keep = torch.tensor([2, 0])
    cache.select(keep)
    out = [net.step(cache, obs[keep, t], act[keep, t - 1]) for t in range(3, 7)]
    torch.testing.assert_close(torch.stack(out, 1), logits[keep, 3:], rtol=0, atol=1e-5)


def test_symbolic_codes_out_of_range_are_clamped():
    net = small()
    obs, act = batch(1, 3)
    bad = obs.clone()
    bad[..., 0], bad[..., 1], bad[..., 2] = 250, 17, 9  # beyond object / colour / state ranges
    clamped = obs.clone()
    clamped[..., 0], clamped[..., 1], clamped[..., 2] = 10, 5, 2
    torch.testing.assert_close(net(bad, act)[0], net(clamped, act)[0])


@pytest.mark.parametrize("n", [1, 5])
def test_symbolic_decode_lookup_equals_the_one_hot_convolutions(n):
    """The decoding encoder (one-hot + first convolution as a table lookup) computes `forward`'s function,
    clamping included, for one observation (NCHW path) and for a batch (channels-last path)."""
    enc = small().obs_enc
    g = torch.Generator().manual_seed(n)
    obs = torch.randint(0, 256, (n, 7, 7, 3), generator=g).to(torch.uint8)
    obs[: n // 2] %= 11  # some in range, some far out of range
    with torch.no_grad():
        torch.testing.assert_close(enc.decode(obs, enc.conv1_table()), enc(obs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_encoders_equal_the_channel_first_reference_in_values_and_gradients(obs_mode):
    """The encoders run their convolutions channels-last and read the result in memory order against
    reordered fc columns; values and every parameter's gradient equal the plain channel-first formulation
    (one-hot or scaled channel-first input, cnn, flatten(1), fc), as the released code computes it."""
    enc = small(obs_mode).obs_enc
    obs = batch(3, 2, obs_mode)[0].flatten(0, 1)  # (6, *obs_shape)
    if obs_mode == "symbolic":
        idx = torch.minimum(obs.permute(0, 3, 1, 2).long(), enc.hi) + enc.offset
        x = torch.zeros(obs.shape[0], 20, 7, 7).scatter_(1, idx, 1.0).contiguous()
    else:
        x = (obs.permute(0, 3, 1, 2).float() / 255.0).contiguous()
    params = list(enc.parameters())
    ref = torch.tanh(enc.fc(enc.cnn(x).contiguous().flatten(1)))
    grads_ref = torch.autograd.grad(ref.square().sum(), params)
    out = enc(obs)
    grads = torch.autograd.grad(out.square().sum(), params)
    # 1e-5: 20 rows and 100 rows through the convolutions and the product may be summed in other orders
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    for g, r in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_unique_rows_equals_torch_unique_in_order_and_inverse():
    """The CPU path (rows compared as byte strings by NumPy) gives torch.unique(dim=0)'s result exactly:
    unsigned byte order (255 sorts last), any strides."""
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 3, (300, 6), generator=g).to(torch.uint8)  # many repeated rows
    rows[5, 0], rows[9, 3] = 255, 128
    for r in (rows, rows[::2], rows.t().contiguous().t()):  # contiguous, strided, column-major
        u, inv = unique_rows(r)
        tu, tinv = torch.unique(r, dim=0, return_inverse=True)
        assert torch.equal(u, tu) and torch.equal(inv, tinv) and inv.dtype == torch.int64


def test_encode_unique_equals_the_encoder_on_every_row_in_values_and_gradients():
    """Deduplication is invisible: each row is its observation's encoding, and each parameter's gradient is
    the one of running the encoder on all rows (the duplicates' gradients summed)."""
    enc = small().obs_enc
    distinct = batch(1, 20)[0][0]  # (20, 7, 7, 3)
    obs = distinct[torch.randint(0, 20, (DEDUP_MIN + 36,), generator=torch.Generator().manual_seed(1))]
    params = list(enc.parameters())
    ref = enc(obs)
    grads_ref = torch.autograd.grad(ref.square().sum(), params)
    out = encode_unique(enc, obs)
    grads = torch.autograd.grad(out.square().sum(), params)
    # 1e-5: 20 rows and 100 rows through the convolutions and the product may be summed in other orders
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    for g, r in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_encode_unique_gradients_repeat_exactly_on_several_threads():
    """The duplicates' gradients are summed in one order whatever the threads do: the same bits every time
    (the backward of ``rows[inverse]`` added them in the order two threads reached them)."""
    views = batch(1, 50)[0][0]  # (50, 7, 7, 3) distinct
    obs = views[torch.randint(0, 50, (4000,), generator=torch.Generator().manual_seed(2))]
    w = torch.randn(7 * 7 * 3, 128, generator=torch.Generator().manual_seed(3), requires_grad=True)
    g = torch.randn(4000, 128, generator=torch.Generator().manual_seed(4))

    def grad() -> torch.Tensor:
        out = encode_unique(lambda x: x.flatten(1).float() @ w, obs)
        return torch.autograd.grad(out, w, g)[0]

    with torch_threads(2):
        first = grad()
        assert all(torch.equal(grad(), first) for _ in range(10))


def test_encode_unique_encodes_each_distinct_observation_once_even_when_most_are_distinct():
    """A Hallway-like batch: every real view distinct, the padding one repeated view. The encoder sees the
    distinct rows only (the padding once); when nothing repeats it gets the observations as they are."""
    enc = small().obs_enc
    seen: list[torch.Tensor] = []

    class Recording(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return enc(x)

    real = batch(1, DEDUP_MIN + 20)[0][0]  # distinct random views
    obs = torch.cat((real, torch.zeros(10, 7, 7, 3, dtype=torch.uint8)))  # 10 padding rows, all one view
    out = encode_unique(Recording(), obs)
    assert [x.shape[0] for x in seen] == [DEDUP_MIN + 21]
    torch.testing.assert_close(out, enc(obs), rtol=0, atol=1e-5)
    seen.clear()
    encode_unique(Recording(), real)
    assert len(seen) == 1 and seen[0] is real  # no deduplication: no reordered copy


@pytest.mark.parametrize("supervised", [((0, 0),), ((0, 1), (1, 0)), ()])
def test_packed_forward_equals_the_padded_one_on_real_steps_in_values_and_gradients(supervised, monkeypatch):
    """With a mask the layers run on real tokens only (`Packing`); real steps' logits, the supervised attention
    among real tokens and every parameter's gradient of a loss on them equal the padded computation."""
    monkeypatch.setattr(model_module, "PACK_MIN_D_MODEL", 32)  # this small model packs
    packed = []
    monkeypatch.setattr(model_module.Packing, "pack", lambda self, x, f=model_module.Packing.pack: packed.append(1)
                        or f(self, x))
    net = small(supervised=supervised)
    obs, act = batch(3, 6)
    mask = torch.arange(6)[None] < torch.tensor([6, 3, 1])[:, None]  # (3, 6): lengths 6, 3 and 1
    tok = mask.repeat_interleave(2, dim=1)
    real = tok[:, None, :, None] & tok[:, None, None, :]  # (B, 1, L, L): real query x real key
    params = list(net.parameters())

    def run(m):
        logits, attn = net(obs, act, m)
        loss = logits[mask].square().sum() + (0 if attn is None else (attn * real).square().sum())
        return logits[mask], None if attn is None else attn * real, torch.autograd.grad(loss, params)

    ref_logits, ref_attn, ref_grads = run(None)
    assert not packed
    logits, attn, grads = run(mask)
    assert packed, "the masked forward did not pack"
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    if supervised:
        torch.testing.assert_close(attn, ref_attn, rtol=0, atol=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_a_mask_without_padding_or_a_narrow_model_takes_the_plain_path_exactly(monkeypatch):
    """No packing below PACK_MIN_D_MODEL, nor for a batch without padding: bit-for-bit the unmasked pass (so
    seeded results of the CPU preset and of fixed-length tasks did not move)."""
    net = small()  # d_model 32
    obs, act = batch(3, 6)
    mask = torch.arange(6)[None] < torch.tensor([6, 3, 1])[:, None]
    ref = net(obs, act)
    monkeypatch.setattr(model_module.Packing, "__init__", lambda *a: pytest.fail("packed"))
    for m in (mask, torch.ones(3, 6, dtype=torch.bool)):
        out = net(obs, act, m)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    monkeypatch.setattr(model_module, "PACK_MIN_D_MODEL", 32)  # wide enough to pack, but nothing to pack
    out = net(obs, act, torch.ones(3, 6, dtype=torch.bool))
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_training_mode_gradients_reach_supervised_attention():
    net = small(supervised=((1, 0),)).train()
    logits, attn = net(*batch(2, 5))
    (logits.sum() + attn[:, :, 4, 2].sum()).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_autocast_keeps_attention_in_float32():
    net = small(supervised=((0, 0),))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, attn = net(*batch(2, 4))
    assert attn.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 1, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_forward_and_cached_step(dtype):
    net = small(supervised=((1, 1),)).cuda()
    obs, act = (z.cuda() for z in batch(2, 6))
    ref, _ = net(obs, act)
    with torch.autocast("cuda", dtype=dtype):
        logits, attn = net(obs, act)
        cache = net.new_cache(2)
        steps = [net.step(cache, obs[:, t], None if t == 0 else act[:, t - 1]) for t in range(6)]
    assert attn.dtype == torch.float32
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 1, 12, device="cuda"))
    torch.testing.assert_close(logits.float(), ref, rtol=0, atol=0.1)
    torch.testing.assert_close(torch.stack(steps, 1).float(), ref, rtol=0, atol=0.1)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(obs_mode="rgb"), "obs_mode"),
        (dict(n_actions=0), "n_actions"),
        (dict(d_model=30, n_heads=4), "divisible by n_heads"),
        (dict(d_model=9, n_heads=3), "even"),
        (dict(n_layers=0), "n_layers"),
        (dict(dropout=1.0), "dropout"),
        (dict(supervised=((2, 0),)), "out of range"),
        (dict(supervised=((0, 2),)), "out of range"),
        (dict(supervised=((0, -1),)), "out of range"),
        (dict(supervised=((0, 0), (0, 0))), "duplicate"),
        (dict(supervised=((0, 0, 1),)), "pairs"),
        (dict(supervised=(1, 1)), "pairs"),
    ],
)
def test_invalid_arguments_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        small(**kw)


def test_invalid_inputs_raise():
    net = small()
    obs, act = batch(2, 3)
    with pytest.raises(ValueError, match="uint8"):
        net(obs.float(), act)
    with pytest.raises(ValueError, match="shape"):
        net(obs[..., :2], act)
    with pytest.raises(ValueError, match="actions must have shape"):
        net(obs, act[:, :2])
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        net(obs, act, torch.ones(2, 3))
    with pytest.raises(ValueError, match="prefix of each row"):
        net(obs, act, torch.tensor([[True, False, True], [True, True, True]]))
    cache = net.new_cache(2)
    with pytest.raises(ValueError, match="None at the first step"):
        net.step(cache, obs[:, 0], act[:, 0])
    net.step(cache, obs[:, 0])
    with pytest.raises(ValueError, match="prev_action"):
        net.step(cache, obs[:, 1])
    with pytest.raises(ValueError, match="batch"):
        net.step(cache, obs[:1, 1], act[:1, 0])
