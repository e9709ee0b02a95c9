"""The real stack end to end: the tiny policy in an in-process vLLM engine, logprobs against HF."""

from __future__ import annotations

import numpy as np
import pytest

from arealnb.diagnostics import logprob_gaps
from arealnb.models import load_policy
from arealnb.tasks import RunningSum

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def generator(tiny_policy):
    from arealnb.offline import OfflineGenerator

    with OfflineGenerator(tiny_policy, dtype="float32", kv_cache_bytes=32 << 20) as g:
        yield g


@pytest.fixture(scope="module")
def prompts(tiny_policy):
    _, tok = load_policy(tiny_policy)
    problems = RunningSum().sample(np.random.default_rng(7), 24)
    return problems, [tok(p.prompt)["input_ids"] for p in problems]


def test_fp32_engine_logprobs_match_hf_log_softmax(generator, prompts, tiny_policy):
    problems, ids = prompts
    samples = generator.generate(ids, max_new_tokens=48, temperature=1.0, seed=0)
    model, _ = load_policy(tiny_policy)
    for s in samples:
        assert len(s.output_ids) == len(s.logprobs) > 0
        assert s.finish_reason in ("stop", "length")
    gaps = logprob_gaps(model, samples)
    assert len(gaps) == sum(len(s.output_ids) for s in samples) > 100
    assert gaps.max() < 1e-4, f"max |vLLM - HF| logprob difference {gaps.max():.2e} over {len(gaps)} tokens"


def test_same_seed_same_tokens_and_greedy_equals_hf(generator, prompts, tiny_policy):
    _, ids = prompts
    a = generator.generate(ids[:8], max_new_tokens=32, seed=123)
    b = generator.generate(ids[:8], max_new_tokens=32, seed=123)
    assert [s.output_ids for s in a] == [s.output_ids for s in b]
    greedy = generator.generate(ids[:8], max_new_tokens=32, temperature=0.0)
    model, tok = load_policy(tiny_policy)
    import torch

    for s in greedy:
        hf = model.generate(torch.tensor([s.prompt_ids]), max_new_tokens=32, do_sample=False,
                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(s.prompt_ids):]
        assert s.output_ids == hf.tolist()


def test_the_policy_is_neither_hopeless_nor_perfect(generator, prompts):
    problems, ids = prompts
    samples = generator.generate(ids, max_new_tokens=160, temperature=1.0, seed=1)
    task = RunningSum()
    rewards = [task.reward(s.text, p) for s, p in zip(samples, problems, strict=True)]
    assert 0.0 < np.mean(rewards) < 1.0


def test_engine_starts_in_a_process_that_already_uses_numba(tiny_policy):
    """A notebook may load spnkit (numba, llvmlite) before it builds an engine: vLLM's module scan at engine
    build used to die on llvmlite's library proxy (see arealnb.runtime.before_engine_build)."""
    import subprocess
    import sys

    script = (
        "import numpy as np, spnkit\n"
        "from spnkit.flat_spn import FlatSPN\n"
        "FlatSPN(node_type=[0, 0, 1], child_ptr=[0, 0, 0, 2], children=[0, 1], log_w=np.log([.5, .5]),\n"
        "        leaf_var=[0, 0, -1], leaf_val=[0, 1, -1], cardinalities=[2]).log_prob([[0]])\n"
        "from arealnb.offline import OfflineGenerator\n"
        f"with OfflineGenerator({str(tiny_policy)!r}, kv_cache_bytes=16 << 20) as g:\n"
        "    s = g.generate([[1, 5, 15]], max_new_tokens=4, ignore_eos=True, seed=0)\n"
        "print(len(s[0].output_ids))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "4"
