from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arealnb.errors import ConfigError
from arealnb.tasks import ProblemSet, RunningSum


@given(st.lists(st.integers(0, 9), min_size=1, max_size=40))
def test_demonstration_is_the_running_sum_and_earns_full_reward(terms):
    task = RunningSum()
    p = task.make(terms)
    partial = [int(x) for x in p.demonstration.split(",")]
    assert partial == list(np.cumsum(terms))
    assert p.answer == str(sum(terms)) and p.prompt == "+".join(map(str, terms)) + "="
    assert task.reward(p.demonstration, p) == 1.0
    assert task.reward(p.demonstration + "1", p) == 0.0
    assert set(p.prompt + p.demonstration) <= set(task.alphabet)


def test_lengths_are_long_tailed():
    task = RunningSum(min_terms=2, max_terms=32, alpha=1.6)
    ks = np.array([p.n_terms for p in task.sample(np.random.default_rng(0), 20000)])
    lengths = np.array([len(p.demonstration) for p in task.sample(np.random.default_rng(1), 20000)])
    assert np.median(ks) <= 4 and ks.min() == 2 and ks.max() == 32   # most are short ...
    assert np.quantile(lengths, 0.99) >= 10 * np.median(lengths)      # ... a few are 10x longer
    np.testing.assert_allclose(np.bincount(ks, minlength=33)[2:] / len(ks), task.length_probs(), atol=0.01)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="max_terms"):
        RunningSum(max_terms=0)
    with pytest.raises(ValueError, match="min_terms"):
        RunningSum(min_terms=5, max_terms=4)


def test_problem_set_is_a_fixed_seeded_sample_of_the_task():
    task = RunningSum(max_terms=6)
    s = ProblemSet(task, n=16, seed=3)
    assert [p.prompt for p in s.problems] == [p.prompt for p in ProblemSet(task, n=16, seed=3).problems]
    prompts = {p.prompt for p in s.problems}
    drawn = s.sample(np.random.default_rng(0), 500)
    assert {p.prompt for p in drawn} == prompts                  # 500 draws from 16 reach every problem, nothing else
    p = drawn[0]
    assert s.reward(p.demonstration, p) == 1.0 and s.reward("0", p) == task.reward("0", p)
    assert s.held_out() is task and s.config()["n"] == 16


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "8"])
def test_problem_set_size_must_be_a_positive_int(n):
    with pytest.raises(ConfigError, match="number of problems"):
        ProblemSet(RunningSum(), n=n)
