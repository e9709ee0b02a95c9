"""Verifiable-reward tasks whose answers have long-tailed output lengths.

``RunningSum``: the prompt is a list of k one-digit numbers, ``"3+4+1="``; the demonstration writes every
running partial sum, ``"3,7,8"``, and the final answer is the last one. k is drawn from a truncated power
law ``P(k) ∝ k^-alpha`` on ``min_terms..max_terms``, so most outputs are a few tokens and a few are 10x longer:
the length tail that asynchronous rollout exists to absorb (AReaL §1.1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str           # the final answer, compared by exact match
    demonstration: str    # a correct completion (without EOS)
    n_terms: int


@dataclass(frozen=True)
class RunningSum:
    """Sum k one-digit numbers, writing each running partial sum."""

    min_terms: int = field(default=2, metadata={"help": "smallest k (a one-term 'sum' is a copy, not a task)"})
    max_terms: int = field(default=32, metadata={"help": "largest k (number of terms)"})
    alpha: float = field(default=1.6, metadata={"help": "power-law exponent of P(k) ∝ k^-alpha; larger = "
                                                        "shorter outputs, thinner tail"})
    name: str = "running_sum"

    def __post_init__(self) -> None:
        if not 1 <= self.min_terms <= self.max_terms:
            raise ConfigError(f"min_terms={self.min_terms}, max_terms={self.max_terms}; expected "
                             "1 <= min_terms <= max_terms")
        if self.alpha < 0:
            raise ConfigError(f"alpha={self.alpha}; expected >= 0")

    alphabet = "0123456789+=,"

    def config(self) -> dict:
        return asdict(self)

    def terms_range(self) -> np.ndarray:
        """The possible k, ``min_terms..max_terms``."""
        return np.arange(self.min_terms, self.max_terms + 1)

    def length_probs(self) -> np.ndarray:
        """P(k) for each k of :meth:`terms_range`."""
        p = self.terms_range().astype(np.float64) ** -self.alpha
        return p / p.sum()

    def sample(self, rng: np.random.Generator, n: int) -> list[Problem]:
        ks = rng.choice(self.terms_range(), size=n, p=self.length_probs())
        return [self.make(rng.integers(0, 10, size=int(k))) for k in ks]

    @staticmethod
    def make(terms) -> Problem:
        terms = [int(t) for t in terms]
        partial = np.cumsum(terms)
        demo = ",".join(str(int(s)) for s in partial)
        return Problem(prompt="+".join(map(str, terms)) + "=", answer=str(int(partial[-1])),
                       demonstration=demo, n_terms=len(terms))

    @staticmethod
    def extract_answer(completion: str) -> str:
        """The final answer of a completion: its last comma-separated field."""
        return completion.strip().rsplit(",", 1)[-1]

    def reward(self, completion: str, problem: Problem) -> float:
        """1.0 when the final answer matches exactly, else 0.0."""
        return 1.0 if self.extract_answer(completion) == problem.answer else 0.0


class ProblemSet:
    """A fixed training set of ``n`` problems drawn once from ``task`` (seeded), as RL datasets are (AReaL
    trains on a fixed set of math problems for several epochs). ``sample`` draws from the set, ``reward`` is the
    task's; :meth:`held_out` gives a task over fresh problems of the same distribution, for evaluation."""

    def __init__(self, task, n: int = 256, seed: int = 0):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n={n!r}; expected an int >= 1 (the number of problems in the set)")
        self.task = task
        self.n = n
        self.seed = seed
        self.problems = task.sample(np.random.default_rng(seed), n)
        self.name = f"{getattr(task, 'name', type(task).__name__)}_set{n}"

    def sample(self, rng: np.random.Generator, n: int) -> list:
        return [self.problems[i] for i in rng.integers(0, self.n, size=n)]

    def reward(self, completion: str, problem) -> float:
        return self.task.reward(completion, problem)

    def held_out(self):
        """The underlying task (fresh problems each draw: mostly outside the set)."""
        return self.task

    def config(self) -> dict:
        inner = self.task.config() if hasattr(self.task, "config") else {}
        return {"task": inner, "n": self.n, "seed": self.seed}
