"""The PyTorch learner: one PPO step on a batch of trajectories, in the thread that calls it.

The model is any HF causal LM folder (``AutoModelForCausalLM``), trained in fp32 on CPU (or on ``device``). A step
computes advantages, splits the batch into ``ppo_n_minibatches`` optimizer steps, packs each into micro-batches
(Alg. 1, padding-free rows, gradients accumulated), and returns its statistics. The maths is in :mod:`arealnb.ppo`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import ppo
from .api import Trajectory


class Learner:
    """Holds the policy and its optimizer. Not thread-safe: one thread runs its steps (the trainer's learner
    thread), so torch's per-thread intra-op setting sticks.

    Parameters
    ----------
    policy_path : HF causal-LM folder.
    cfg : a :class:`arealnb.trainer.TrainerConfig` (lr, betas, clip, loss switches, packing budget...).
    """

    def __init__(self, policy_path: str | os.PathLike, cfg, device: str = "cpu", comm=None):
        import torch
        from transformers import AutoModelForCausalLM

        self.cfg = cfg
        self.comm = comm                # arealnb.distributed.Comm: this rank's shard, gradients summed over ranks
        self.device = torch.device(device)
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()          # a per-run "Loading weights" bar is noise in notebooks
        try:
            self.model = AutoModelForCausalLM.from_pretrained(Path(policy_path), dtype=torch.float32).to(self.device)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.config.use_cache = False
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas),
                                           eps=cfg.adam_eps, weight_decay=cfg.weight_decay)

    # ------------------------------------------------------------------------------------------------
    def advantages(self, trajs: list[Trajectory]) -> np.ndarray:
        """Per-sample advantages (group-normalised scaled rewards), before batch normalisation."""
        c = self.cfg
        return ppo.group_advantages(np.array([t.reward for t in trajs]), np.array([t.group for t in trajs]),
                                    c.reward_scaling, c.reward_bias, c.group_reward_norm)

    def _forward_logp(self, seqs: list[np.ndarray]):
        """Token log-probs of a packed micro-batch, flat: the sequences' values concatenated in order."""
        import torch

        ids, pos, places = ppo.packed_inputs(seqs, self.cfg.pack_row_tokens)
        ids, pos = ids.to(self.device), pos.to(self.device)
        logits = self.model(input_ids=ids, position_ids=pos, use_cache=False).logits
        rows = [ppo.token_logp_from_logits(logits[r], ids[r], self.cfg.temperature, pos[r])
                for r in range(ids.shape[0])]
        return torch.cat([rows[r][s:s + n] for r, s, n in places])

    def step(self, trajs: list[Trajectory], version: int) -> dict[str, Any]:
        """One training step at learner version ``version`` (the weights the batch is compared against)."""
        import torch

        c = self.cfg
        t0 = time.perf_counter()
        adv = self.advantages(trajs)
        # batch-level normalisation over output tokens (each token carries its sample's advantage)
        n_out = np.array([t.n_output for t in trajs], dtype=np.float64)
        if c.adv_norm and n_out.sum() > 0:
            mean = float((adv * n_out).sum() / n_out.sum())
            std = float(np.sqrt((((adv - mean) ** 2) * n_out).sum() / n_out.sum()))
            adv = (adv - mean) / (std + 1e-6)
        tensors = [self._tensors(t, a) for t, a in zip(trajs, adv, strict=True)]
        minibatches = np.array_split(np.arange(len(trajs)), max(1, min(c.ppo_n_minibatches, len(trajs))))
        n_tokens_mb = [int(sum(trajs[int(i)].n_output for i in mb)) for mb in minibatches]
        if self.comm is not None:      # every rank sees the whole batch (advantages, token counts) and trains its share
            minibatches = [self.comm.shard(mb, [len(trajs[int(i)].input_ids) for i in mb]) for mb in minibatches]
        plans = [ppo.allocate_microbatches([len(trajs[i].input_ids) for i in mb], c.max_tokens_per_mb)
                 for mb in minibatches]
        prox: dict[int, torch.Tensor] = {}
        t_prox = 0.0
        if c.use_decoupled_loss and c.prox_logp_method == "recompute" and len(minibatches) > 1:
            tp = time.perf_counter()
            with torch.no_grad():
                for mb, plan in zip(minibatches, plans, strict=True):
                    for part in plan:
                        idx = [int(mb[j]) for j in part]
                        lp = self._forward_logp([trajs[i].input_ids for i in idx])
                        for i, piece in zip(idx, torch.split(lp, [len(trajs[i].input_ids) for i in idx]),
                                            strict=True):
                            prox[i] = piece
            t_prox = time.perf_counter() - tp
        sums = {"n": 0.0, "clipped": 0.0, "filtered": 0.0, "approx_kl": 0.0}
        imp_max, loss_total, grad_norms, gap = 0.0, 0.0, [], 0.0
        for mb, plan, n_tokens in zip(minibatches, plans, n_tokens_mb, strict=True):
            self.optimizer.zero_grad(set_to_none=True)
            for part in plan:
                idx = [int(mb[j]) for j in part]
                logp = self._forward_logp([trajs[i].input_ids for i in idx])
                mask, behav, versions, a = (torch.cat([tensors[i][k] for i in idx]) for k in range(4))
                if not c.use_decoupled_loss:
                    prox_lp = behav
                elif c.prox_logp_method == "loglinear":
                    prox_lp = ppo.loglinear_prox_logp(behav, logp, versions, version)
                elif prox:
                    prox_lp = torch.cat([prox[i] for i in idx])
                else:                     # one minibatch: the training forward is π_prox's forward
                    prox_lp = logp.detach()
                loss, st = ppo.ppo_loss(logp, prox_lp, behav, a, mask, n_tokens, c.eps_clip,
                                        c.behave_imp_weight_cap, c.use_decoupled_loss)
                loss.backward()
                loss_total += float(loss.detach())
                for k in sums:
                    sums[k] += st[k]
                imp_max = max(imp_max, st["imp_weight_max"])
                cur = mask & (versions == version)
                if cur.any():
                    gap = max(gap, float((logp.detach() - behav)[cur].abs().max()))
            if self.comm is not None:
                self.comm.sum_grads(self.model)
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.gradient_clipping)
            grad_norms.append(float(gn))
            self.optimizer.step()
        n_mb = sum(len(p) for p in plans)
        if self.comm is not None:
            loss_total, n_mb, *vals = self.comm.sum_floats([loss_total, n_mb, *sums.values()])
            sums = dict(zip(sums, vals, strict=True))
            imp_max, gap = self.comm.max_floats([imp_max, gap])
        n = max(sums["n"], 1.0)
        return {
            "loss": loss_total / len(minibatches), "clip_fraction": sums["clipped"] / n,
            "filtered_fraction": sums["filtered"] / n, "approx_kl": sums["approx_kl"] / n,
            "imp_weight_max": imp_max, "grad_norm": float(np.mean(grad_norms)) if grad_norms else 0.0,
            "behav_logp_gap": gap, "prox_seconds": t_prox, "learner_seconds": time.perf_counter() - t0,
            "microbatches": int(n_mb), "trained_tokens": int(sum(len(t.input_ids) for t in trajs)),
        }

    def _tensors(self, t: Trajectory, adv: float):
        import torch

        mask = torch.from_numpy(t.loss_mask)
        return (mask, torch.from_numpy(t.logprobs.astype(np.float32)), torch.from_numpy(t.versions),
                mask.float() * float(adv))

    def load_optimizer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def close(self) -> None:
        """Nothing to release in one process (:class:`arealnb.distributed.DataParallelLearner` stops its ranks)."""

    def state_dict(self) -> dict:
        """The live parameters (not copies): the engine copies them during a push; step only after it returns."""
        return dict(self.model.state_dict())
