"""The learner's mathematics: advantages, the decoupled PPO loss, π_prox approximations, micro-batch packing.

Pure functions over torch tensors (flat, one entry per token of a packed batch), so each is checked against
hand-computed values in the tests. Formulas follow AReaL (paper §4.2, Eqs. 2, 4, 5; ../shared/AREAL.md §1.3,
§1.5, §1.6).

**Advantages** (no critic, γ = λ = 1, outcome reward at the last token, so every output token of a sample gets
the sample's advantage): ``r' = (r + reward_bias) · reward_scaling``; with ``group_norm`` subtract the group mean
and divide by the group std (GRPO, AReaL's GSM8K recipe); with ``batch_norm`` normalise the per-token advantages
over the batch (``adv_norm`` at batch level).

**Decoupled PPO** (Eq. 5), per output token t with ``u_t = π_θ / π_prox`` and behaviour weight
``w_t = π_prox / π_behav``::

    loss = - Σ_t  m_t · w_t · min(u_t·A_t, clip(u_t, 1 - ε, 1 + ε)·A_t)  /  Σ_t loss_mask_t

where ``m_t`` masks tokens with ``w_t > behave_imp_weight_cap`` (AReaL's token-level "mask" rejection) and the
denominator is the original output-token count of the whole batch (masking does not inflate the gradient).
**Naive PPO** (the ablation): ``π_prox = π_behav`` (clip around the policy that sampled; no weight, no mask).

**π_prox** is the policy before this step's update. ``recompute``: its log-probs from a forward pass (with one
PPO minibatch per step the training forward *is* that pass, bit for bit, so it is reused: no extra forward).
``loglinear`` (AReaL ``compute_prox_logp_approximations``): with the learner at version v, AReaL's convention
``v_prox = v - 1``, and per-token behaviour version ``v_b``:
``α = clamp((v_prox - v_b) / (v - v_b), 0, 1)`` (0 where ``v_b = v``) and
``log π_prox ≈ log π_behav + α · (log π_θ - log π_behav)``, with ``log π_θ`` detached.

**Packing** (Alg. 1, ``areal/utils/seqpack.py::_ffd_allocate``): sort sequences by length, longest first; a
sequence opens a new micro-batch when fewer than ``min_mbs`` exist or none has room under ``max_tokens``,
otherwise it joins the micro-batch *with the fewest sequences* among those it fits. Each micro-batch then runs as
one padding-free row (sequences concatenated, positions restarting, attention kept within each sequence).
"""

from __future__ import annotations

import numpy as np


def group_advantages(rewards: np.ndarray, groups: np.ndarray, reward_scaling: float = 1.0,
                     reward_bias: float = 0.0, group_norm: bool = True, eps: float = 1e-6) -> np.ndarray:
    """Per-sample advantage before batch normalisation: scaled reward, minus its group's mean, over its std."""
    r = (np.asarray(rewards, dtype=np.float64) + reward_bias) * reward_scaling
    if not group_norm:
        return r
    out = np.empty_like(r)
    groups = np.asarray(groups)
    for g in np.unique(groups):
        sel = groups == g
        x = r[sel]
        out[sel] = (x - x.mean()) / (x.std() + eps)
    return out


def loglinear_prox_logp(behav_logp, theta_logp, versions, version: int):
    """AReaL's log-linear π_prox approximation (see the module docstring); ``theta_logp`` is detached."""
    import torch

    vb = versions.to(torch.float64)
    v_theta = float(version)
    v_prox = v_theta - 1.0
    diff = v_theta - vb
    alpha = torch.where((diff > 0) & (versions >= 0), (v_prox - vb) / diff.clamp(min=1e-12), torch.zeros_like(vb))
    alpha = alpha.clamp(0.0, 1.0).to(behav_logp.dtype)
    return behav_logp + alpha * (theta_logp.detach() - behav_logp)


def ppo_loss(logp, prox_logp, behav_logp, advantages, mask, n_tokens: int, eps_clip: float = 0.2,
             behave_imp_weight_cap: float | None = 5.0, decoupled: bool = True):
    """Sum of the per-token PPO terms over ``mask``, divided by ``n_tokens`` (the batch's output-token count).

    Tensors are flat and aligned (one entry per token). Returns ``(loss, stats)`` where ``stats`` holds sums over
    the masked tokens (``n``, ``clipped``, ``filtered``, ``approx_kl``, ``imp_weight_max``) so micro-batches add up.
    With ``decoupled=False`` the proximal policy is the behaviour policy (naive PPO).
    """
    import torch

    mask = mask.bool()
    if not decoupled:
        prox_logp = behav_logp
    prox_logp = prox_logp.detach()
    ratio = torch.exp(logp - prox_logp)
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1.0 - eps_clip, 1.0 + eps_clip) * advantages
    pg = -torch.minimum(surr1, surr2)
    keep = mask
    if decoupled:
        w = torch.exp(prox_logp - behav_logp)
        if behave_imp_weight_cap is not None:
            keep = mask & (w <= behave_imp_weight_cap)
        pg = pg * w
    else:
        w = torch.ones_like(ratio)
    loss = torch.where(keep, pg, torch.zeros_like(pg)).sum() / max(int(n_tokens), 1)
    with torch.no_grad():
        stats = {
            "n": float(mask.sum()),
            "clipped": float(((surr2 < surr1) & mask).sum()),      # the clip bound is the one taken
            "filtered": float((mask & ~keep).sum()),
            "approx_kl": float(torch.where(mask, prox_logp - logp, torch.zeros_like(logp)).sum()),
            "imp_weight_max": float(torch.where(mask, w, torch.zeros_like(w)).max()) if mask.any() else 0.0,
        }
    return loss, stats


def allocate_microbatches(lengths, max_tokens: int, min_mbs: int = 1) -> list[list[int]]:
    """Alg. 1 of the paper: indices of ``lengths`` per micro-batch (see the module docstring).

    A sequence longer than ``max_tokens`` gets a micro-batch of its own. Micro-batches are returned in the order
    they were opened; within one, indices in the order they joined.
    """
    lengths = [int(x) for x in lengths]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    totals: list[int] = []
    for i in order:
        fits = [b for b in range(len(batches)) if totals[b] + lengths[i] <= max_tokens]
        if len(batches) < min_mbs or not fits:
            batches.append([i])
            totals.append(lengths[i])
        else:
            b = min(fits, key=lambda b: (len(batches[b]), b))
            batches[b].append(i)
            totals[b] += lengths[i]
    return batches


def packed_inputs(seqs: list[np.ndarray], row_tokens: int | None = None):
    """Padding-free inputs for several sequences: ``(input_ids, position_ids, places)``.

    Sequences are packed first-fit-decreasing into rows of at most ``row_tokens`` tokens (one row holding
    everything when ``None``; a longer sequence gets a row of its own), so ``input_ids`` and ``position_ids`` have
    shape (rows, R) with R the fullest row. Positions restart at 0 for each sequence; a row's unused tail is one
    more restarting segment of pad ids that no sequence reads. ``places[i] = (row, start, length)`` locates
    sequence ``i``. HF models built on ``transformers.masking_utils`` read restarting ``position_ids`` (with no
    attention mask and no cache) as packed sequences and keep attention within each. Rows, rather than one long
    row, keep the attention cost Σ R² instead of (Σ len)²: the mask is dense on CPU (measured in
    ``benchmarks/rl_throughput.py``'s docstring).
    """
    import torch

    lengths = [len(x) for x in seqs]
    cap = row_tokens if row_tokens is not None else sum(lengths)
    fill: list[int] = []
    places: list[tuple[int, int, int]] = [(0, 0, 0)] * len(seqs)
    for i in sorted(range(len(seqs)), key=lambda i: -lengths[i]):
        r = next((r for r, f in enumerate(fill) if f + lengths[i] <= cap), None)
        if r is None:
            r = len(fill)
            fill.append(0)
        places[i] = (r, fill[r], lengths[i])
        fill[r] += lengths[i]
    R = max(fill)
    ids = np.zeros((len(fill), R), dtype=np.int64)
    pos = np.zeros((len(fill), R), dtype=np.int64)
    for x, (r, s, n) in zip(seqs, places, strict=True):
        ids[r, s:s + n] = x
        pos[r, s:s + n] = np.arange(n)
    for r, f in enumerate(fill):
        pos[r, f:] = np.arange(R - f)
    return torch.from_numpy(ids), torch.from_numpy(pos), places


def token_logp_from_logits(logits, input_ids, temperature: float = 1.0, position_ids=None):
    """``log π(x_t | x_<t)`` at every position of a flat row, from logits (T, V) and ids (T,). The first token of
    each sequence (position 0, or every ``position_ids == 0`` of a packed row) has no prediction: 0.
    Temperature as the sampler's (0 = greedy: logits as they are)."""
    import torch

    lg = logits[:-1].float()
    if temperature > 0 and temperature != 1.0:
        lg = lg / temperature
    lp = torch.cat([lg.new_zeros(1), torch.log_softmax(lg, dim=-1).gather(-1, input_ids[1:, None]).squeeze(-1)])
    if position_ids is not None:
        lp = torch.where(position_ids == 0, torch.zeros_like(lp), lp)
    return lp
