"""The learner's mathematics against hand-computed values: advantages, the decoupled / naive PPO loss (masking,
cap, denominators), the log-linear π_prox, Alg. 1 packing, and packed vs padded forwards of a real HF model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arealnb import ppo


def test_group_advantages_scale_then_normalise_per_group():
    r = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    g = np.array([0, 0, 0, 0, 1, 1])
    raw = ppo.group_advantages(r, g, reward_scaling=10, reward_bias=-0.5, group_norm=False)
    assert raw.tolist() == [5, -5, -5, -5, 5, 5]
    adv = ppo.group_advantages(r, g, reward_scaling=10, reward_bias=-0.5)
    # group 0: scaled [5,-5,-5,-5], mean -2.5, std sqrt(18.75); group 1: uniform -> 0
    s = math.sqrt(((7.5**2) + 3 * 2.5**2) / 4)
    assert np.allclose(adv[:4], [7.5 / s, -2.5 / s, -2.5 / s, -2.5 / s], atol=1e-6)
    assert np.allclose(adv[4:], 0)


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_decoupled_loss_by_hand():
    # 4 tokens, the last is padding (mask 0). logp under θ, π_prox and π_behav:
    logp = _t([-1.0, -2.0, -0.5, -3.0]).requires_grad_()
    prox = _t([-1.2, -1.5, -0.5, -3.0])
    behav = _t([-1.1, -3.7, -0.6, -3.0])
    adv = _t([1.0, -2.0, 0.5, 9.0])
    mask = torch.tensor([True, True, True, False])
    loss, st_ = ppo.ppo_loss(logp, prox, behav, adv, mask, n_tokens=3, eps_clip=0.2, behave_imp_weight_cap=5.0)
    # token 0: u = e^0.2 = 1.2214 > 1.2 -> clipped term 1.2*1 smaller -> min = 1.2; w = e^-0.1
    # token 1: w = e^(2.2) = 9.03 > 5 -> masked out
    # token 2: u = 1, term = 0.5; w = e^0.1
    expect = -(math.exp(-0.1) * 1.2 + math.exp(0.1) * 0.5) / 3
    assert float(loss.detach()) == pytest.approx(expect, abs=1e-12)
    # clip statistics on the pre-filter mask (as AReaL): token 0 and the masked token 1 (u = e^-0.5, A < 0)
    assert st_["n"] == 3 and st_["filtered"] == 1 and st_["clipped"] == 2
    assert st_["imp_weight_max"] == pytest.approx(math.exp(2.2))
    loss.backward()
    # d/dlogp: token 0 clipped (no gradient), token 1 masked, token 2: -w*u*A/3, token 3 padding
    assert logp.grad.tolist() == pytest.approx([0.0, 0.0, -math.exp(0.1) * 0.5 / 3, 0.0], abs=1e-12)


def test_no_cap_keeps_every_token_and_denominator_is_the_given_count():
    logp = _t([-1.0, -2.0])
    behav = _t([-1.0, -4.0])
    adv = _t([1.0, 1.0])
    mask = torch.tensor([True, True])
    loss, st_ = ppo.ppo_loss(logp, logp, behav, adv, mask, n_tokens=10, behave_imp_weight_cap=None)
    assert float(loss) == pytest.approx(-(1.0 + math.exp(2.0)) / 10)
    assert st_["filtered"] == 0


def test_naive_ppo_clips_around_the_behaviour_policy():
    logp = _t([-1.0, -1.0]).requires_grad_()
    behav = _t([-1.5, -0.9])
    adv = _t([1.0, -1.0])
    mask = torch.tensor([True, True])
    loss, st_ = ppo.ppo_loss(logp, _t([0.0, 0.0]), behav, adv, mask, n_tokens=2, eps_clip=0.2, decoupled=False)
    # token 0: u = e^0.5 = 1.65 -> clipped at 1.2 (A>0): term 1.2; token 1: u = e^-0.1 = 0.905 (A<0):
    # min(-0.905, -0.905) -> -0.905 (inside the range)
    assert float(loss.detach()) == pytest.approx(-(1.2 - math.exp(-0.1)) / 2)
    assert st_["clipped"] == 1 and st_["imp_weight_max"] == 1.0


def test_loglinear_matches_recompute_when_all_versions_are_current_and_interpolates_otherwise():
    behav = _t([-1.0, -2.0, -3.0, 0.0])
    theta = _t([-1.5, -1.0, -2.0, 0.0])
    v = 5
    # every token produced by the current version: π_prox = π_behav = π_θ's recompute (what "recompute" gives)
    cur = ppo.loglinear_prox_logp(theta, theta, torch.tensor([5, 5, 5, -1]), v)
    assert torch.equal(cur, theta)
    versions = torch.tensor([5, 3, 1, -1])         # AReaL: v_prox = v - 1 = 4
    out = ppo.loglinear_prox_logp(behav, theta, versions, v)
    # alpha: token0 v_b=5 -> 0; token1 (4-3)/(5-3) = 0.5; token2 (4-1)/(5-1) = 0.75; prompt -> 0
    assert out.tolist() == pytest.approx([-1.0, -1.5, -2.25, 0.0])
    # and the loss with loglinear equals the one with recompute in the all-current case
    mask = torch.tensor([True, True, True, False])
    adv = _t([1.0, -1.0, 0.5, 0.0])
    a, _ = ppo.ppo_loss(theta, cur, theta, adv, mask, 3)
    b, _ = ppo.ppo_loss(theta, theta.detach(), theta, adv, mask, 3)
    assert float(a) == float(b)


def test_alg1_allocation_on_a_known_input():
    # lengths sorted desc: 9(i1) 7(i3) 5(i0) 4(i4) 3(i2) 2(i5); cap 10, min 2 micro-batches
    alloc = ppo.allocate_microbatches([5, 9, 3, 7, 4, 2], max_tokens=10, min_mbs=2)
    # 9 -> mb0 (opened: fewer than 2); 7 -> mb1 (opened: fewer than 2); 5 fits nowhere (9+5, 7+5) -> mb2;
    # 4 fits mb2 only (5+4=9) -> mb2; 3 fits mb1 (10) -> mb1; 2 fits none? mb0 9+2=11 no, mb1 10+2 no, mb2 9+2 no
    assert alloc == [[1], [3, 2], [0, 4], [5]]
    # fewest sequences wins among those that fit
    assert ppo.allocate_microbatches([4, 4, 1, 1], max_tokens=10) == [[0, 1, 2, 3]]
    assert ppo.allocate_microbatches([4, 4, 1, 1], max_tokens=10, min_mbs=2) == [[0, 2], [1, 3]]
    assert ppo.allocate_microbatches([20, 3], max_tokens=10) == [[0], [1]]     # too long: alone


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=60), cap=st.integers(1, 120),
       k=st.integers(1, 4))
def test_alg1_places_every_sequence_once_within_budget(lengths, cap, k):
    alloc = ppo.allocate_microbatches(lengths, cap, k)
    flat = sorted(i for mb in alloc for i in mb)
    assert flat == list(range(len(lengths)))
    for mb in alloc:
        assert len(mb) == 1 or sum(lengths[i] for i in mb) <= cap
    assert len(alloc) >= min(k, len(lengths))


@pytest.fixture(scope="module")
def tiny_model(tiny_policy):
    from arealnb.models import load_policy

    model, _ = load_policy(tiny_policy)
    return model


def test_packed_and_padded_forwards_give_equal_logprobs_and_losses(tiny_model):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(4, 17, size=n).astype(np.int64) for n in (5, 17, 9, 30)]
    seqs = [np.concatenate([[1], s]) for s in seqs]                       # <bos> first
    ids, pos, places = ppo.packed_inputs(seqs)
    assert ids.shape == (1, sum(len(s) for s in seqs))
    with torch.no_grad():
        packed = ppo.token_logp_from_logits(tiny_model(input_ids=ids, position_ids=pos, use_cache=False).logits[0],
                                            ids[0], temperature=0.7, position_ids=pos[0])
        packed = torch.cat([packed[s:s + n] for _, s, n in places])
        # rows of at most 40 tokens, first fit by decreasing length: 31+6 | 18+10 -> shape (2, 37)
        rids, rpos, rplaces = ppo.packed_inputs(seqs, row_tokens=40)
        assert rids.shape == (2, 37) and rplaces[3] == (0, 0, 31) and rplaces[0] == (0, 31, 6)
        rlogits = tiny_model(input_ids=rids, position_ids=rpos, use_cache=False).logits
        rows = [ppo.token_logp_from_logits(rlogits[r], rids[r], 0.7, rpos[r]) for r in range(rids.shape[0])]
        in_rows = torch.cat([rows[r][s:s + n] for r, s, n in rplaces])
        T = max(len(s) for s in seqs)
        pad = torch.zeros(len(seqs), T, dtype=torch.long)
        att = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            pad[i, :len(s)] = torch.from_numpy(s)
            att[i, :len(s)] = 1
        logits = tiny_model(input_ids=pad, attention_mask=att, use_cache=False).logits
    padded = torch.cat([ppo.token_logp_from_logits(logits[i, :len(s)], pad[i, :len(s)], temperature=0.7)
                        for i, s in enumerate(seqs)])
    assert torch.allclose(packed, padded, atol=1e-5)
    assert torch.allclose(in_rows, padded, atol=1e-5)
    # one sequence alone gives the same values as inside the pack (no attention across sequences)
    alone = ppo.token_logp_from_logits(tiny_model(input_ids=torch.from_numpy(seqs[1])[None]).logits[0].detach(),
                                       torch.from_numpy(seqs[1]), temperature=0.7)
    assert torch.allclose(packed[len(seqs[0]):len(seqs[0]) + len(seqs[1])], alone, atol=1e-5)
    mask = torch.ones_like(packed, dtype=torch.bool)
    mask[0] = False
    adv = torch.linspace(-1, 1, len(packed))
    behav = packed - 0.01
    lp1, _ = ppo.ppo_loss(packed, packed, behav, adv, mask, int(mask.sum()))
    lp2, _ = ppo.ppo_loss(padded, padded, behav, adv, mask, int(mask.sum()))
    assert float(lp1) == pytest.approx(float(lp2), abs=1e-5)
