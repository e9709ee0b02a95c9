"""A data-parallel learner: ``TrainerConfig(learner_world_size=N)`` trains on N ``torch.distributed`` ranks.

Rank 0 is the trainer's own learner (its thread, in the notebook's process); ranks 1 … N−1 are processes started
here (``spawn``), each holding the same policy and AdamW state, loaded from the same folder with the same seed. A
step sends the whole batch to every rank; each computes the batch's advantages and token counts (cheap, identical
everywhere), then trains only its share of each minibatch: the minibatch's sequences dealt to the ranks longest
first, each to the rank with the fewest tokens so far (the same deal on every rank). The loss of every micro-batch
is normalised by the *whole* minibatch's output-token count, so the sum of the ranks' gradients — one
``allreduce`` of all gradients, flattened, per optimizer step — is the single-process gradient; clipping and AdamW
then run identically on every rank and the parameters stay equal without being sent. Rank 0 pushes the weights.
Statistics (loss, clip and filter fractions, KL) are summed over ranks, maxima taken over ranks.

The ranks talk through a standalone gloo process group (``ProcessGroupGloo`` on a ``TCPStore``), not torch's
default group: an in-process vLLM engine owns that one. On GPUs the same structure would use NCCL; the trainer's
learner runs on the CPU, so gloo is what exists and is tested here.

A rank that dies fails the step in progress on rank 0 (gloo reports the closed connection) with
:class:`LearnerRankError`; the learner is then closed, and the trainer's run stops with that error.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import traceback
from pathlib import Path

import numpy as np

from .errors import ArealnbError, ConfigError


class LearnerRankError(ArealnbError, RuntimeError):
    """A data-parallel learner rank failed or died; the learner is closed."""


class Comm:
    """This rank's view of the group: which sequences it trains, and the sums/maxima over ranks."""

    def __init__(self, pg, rank: int, world: int):
        self.pg, self.rank, self.world = pg, rank, world

    def shard(self, idx: np.ndarray, lengths: list[int]) -> np.ndarray:
        """The part of ``idx`` (sequence indices, their token ``lengths``) this rank trains: longest first, each
        to the least loaded rank (ties: the lower rank). Every rank computes the same deal."""
        load = [0] * self.world
        mine = []
        for j in sorted(range(len(idx)), key=lambda j: (-lengths[j], j)):
            r = min(range(self.world), key=lambda r: (load[r], r))
            load[r] += lengths[j]
            if r == self.rank:
                mine.append(int(idx[j]))
        return np.array(sorted(mine), dtype=np.int64)

    def _allreduce(self, t, op=None):
        import torch.distributed as dist

        if op is None:
            self.pg.allreduce([t]).wait()
        else:
            opts = dist.AllreduceOptions()
            opts.reduceOp = op
            self.pg.allreduce([t], opts).wait()
        return t

    def sum_grads(self, model) -> None:
        """Replace each parameter's gradient by its sum over the ranks (one flat allreduce; a rank with no share
        contributes zeros)."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        self._allreduce(flat)
        i = 0
        for p in params:
            n = p.numel()
            p.grad = flat[i:i + n].view_as(p).clone()
            i += n

    def sum_floats(self, xs: list[float]) -> list[float]:
        import torch

        return self._allreduce(torch.tensor(xs, dtype=torch.float64)).tolist()

    def max_floats(self, xs: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        return self._allreduce(torch.tensor(xs, dtype=torch.float64), dist.ReduceOp.MAX).tolist()


def _group(port: int, rank: int, world: int, timeout: float, store=None):
    import torch.distributed as dist

    td = datetime.timedelta(seconds=timeout)
    if store is None:
        store = dist.TCPStore("127.0.0.1", port, world, False, td)
    return store, dist.ProcessGroupGloo(store, rank, world, td)


def _rank_main(rank: int, world: int, port: int, policy_path: str, cfg_dict: dict, threads: int, timeout: float,
               conn) -> None:
    """A rank ≥ 1: join the group, build the learner, then run the steps rank 0 sends."""
    try:
        import torch

        from . import runtime
        from .learner import Learner
        from .trainer import TrainerConfig

        runtime.set_torch_threads(threads)
        store, pg = _group(port, rank, world, timeout)
        cfg = TrainerConfig.from_dict(cfg_dict)
        torch.manual_seed(cfg.seed)
        learner = Learner(policy_path, cfg, comm=Comm(pg, rank, world))
        conn.send(("ready", None))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            if msg[0] == "step":
                learner.step(msg[1], msg[2])
                conn.send(("ok", None))
            elif msg[0] == "optimizer":
                learner.load_optimizer_state(msg[1])
                conn.send(("ok", None))
            elif msg[0] == "params":            # for tests: this rank's parameters
                conn.send(("ok", {k: v.detach().clone() for k, v in learner.model.state_dict().items()}))
    except (EOFError, KeyboardInterrupt):
        pass
    except BaseException:  # noqa: BLE001 - reported to rank 0
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, EOFError):
            pass


class DataParallelLearner:
    """Rank 0 of an N-rank learner (see the module docstring); the same methods as :class:`arealnb.learner.Learner`.

    Parameters
    ----------
    policy_path, cfg : as :class:`~arealnb.learner.Learner` (``cfg.learner_world_size`` ranks).
    threads : torch threads of each rank ≥ 1 (rank 0's are set by the trainer).
    timeout : seconds a collective or a rank's start may take before it counts as failed.
    """

    def __init__(self, policy_path: str | os.PathLike, cfg, threads: int = 1, timeout: float = 300.0):
        import torch
        import torch.distributed as dist

        from .learner import Learner

        world = int(cfg.learner_world_size)
        if world < 2:
            raise ConfigError(f"learner_world_size={world}: a data-parallel learner needs >= 2 ranks")
        self.world, self.timeout = world, float(timeout)
        self._procs: list = []
        self._conns: list = []
        self.local = None
        store = dist.TCPStore("127.0.0.1", 0, world, True, datetime.timedelta(seconds=timeout), wait_for_workers=False)
        ctx = mp.get_context("spawn")
        try:
            for rank in range(1, world):
                ours, theirs = ctx.Pipe()
                p = ctx.Process(target=_rank_main, name=f"arealnb-learner-rank{rank}", daemon=True,
                                args=(rank, world, store.port, str(Path(policy_path)), cfg.to_dict(), threads,
                                      timeout, theirs))
                p.start()
                theirs.close()
                self._procs.append(p)
                self._conns.append(ours)
            _, pg = _group(store.port, 0, world, timeout, store=store)
            self._store = store
            torch.manual_seed(cfg.seed)
            self.local = Learner(policy_path, cfg, comm=Comm(pg, 0, world))
            self._collect("start")
        except BaseException:
            self.close()
            raise

    # the Learner interface -------------------------------------------------------------------------------
    @property
    def model(self):
        return self.local.model

    @property
    def optimizer(self):
        return self.local.optimizer

    def step(self, trajs, version: int) -> dict:
        self._send(("step", trajs, version))
        try:
            stats = self.local.step(trajs, version)
        except BaseException as exc:
            err = self._rank_failure() or f"{type(exc).__name__}: {exc}"
            self.close()
            raise LearnerRankError(f"data-parallel learner step failed: {err}") from exc
        self._collect("step")
        return stats

    def state_dict(self) -> dict:
        return self.local.state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        self.local.load_optimizer_state(state)
        self._send(("optimizer", state))
        self._collect("optimizer state")

    def rank_params(self, rank: int) -> dict:
        """The parameters rank ``rank`` holds (a copy; for checking that the ranks agree)."""
        if rank == 0:
            return {k: v.detach().clone() for k, v in self.local.model.state_dict().items()}
        self._conns[rank - 1].send(("params",))
        return self._reply(rank, "parameters")

    def close(self) -> None:
        """Stop the other ranks (idempotent)."""
        for c in self._conns:
            try:
                c.send(("stop",))
            except (OSError, EOFError, BrokenPipeError):
                pass
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        for c in self._conns:
            c.close()
        self._procs, self._conns = [], []

    # ------------------------------------------------------------------------------------------------
    def _send(self, msg) -> None:
        if not self._conns and self.world > 1:
            raise LearnerRankError("the data-parallel learner is closed")
        for rank, c in enumerate(self._conns, start=1):
            try:
                c.send(msg)
            except (OSError, EOFError, BrokenPipeError):
                self.close()
                raise LearnerRankError(f"learner rank {rank} is gone") from None

    def _reply(self, rank: int, what: str):
        c, p = self._conns[rank - 1], self._procs[rank - 1]
        waited = 0.0
        while not c.poll(0.5):
            waited += 0.5
            if not p.is_alive() or waited > self.timeout:
                why = f"exited with code {p.exitcode}" if not p.is_alive() else f"no answer in {self.timeout:g} s"
                self.close()
                raise LearnerRankError(f"learner rank {rank} {why} (during {what})")
        try:
            kind, payload = c.recv()
        except (EOFError, OSError):
            self.close()
            raise LearnerRankError(f"learner rank {rank} is gone (during {what})") from None
        if kind == "error":
            self.close()
            raise LearnerRankError(f"learner rank {rank} failed during {what}:\n{payload}")
        return payload

    def _collect(self, what: str) -> None:
        for rank in range(1, self.world):
            self._reply(rank, what)

    def _rank_failure(self) -> str | None:
        for rank, (c, p) in enumerate(zip(self._conns, self._procs, strict=True), start=1):
            if not p.is_alive():
                return f"rank {rank} exited with code {p.exitcode}"
            if c.poll(0):
                try:
                    kind, payload = c.recv()
                except (EOFError, OSError):
                    return f"rank {rank} is gone"
                if kind == "error":
                    return f"rank {rank} failed:\n{payload}"
        return None
