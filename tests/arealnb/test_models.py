from __future__ import annotations

import json

import numpy as np
import pytest

from arealnb.models import BOS_ID, EOS_ID, build_policy, build_tokenizer, load_policy, token_logprobs
from arealnb.tasks import RunningSum


def test_tokenizer_is_character_level_and_round_trips():
    tok = build_tokenizer(RunningSum.alphabet)
    ids = tok("12+3=")["input_ids"]
    assert ids[0] == BOS_ID and len(ids) == 6
    assert tok.decode(ids, skip_special_tokens=True) == "12+3="
    assert tok.eos_token_id == EOS_ID


def test_build_is_seeded_cached_and_atomic(tmp_path):
    a = build_policy(path=tmp_path / "a", steps=3, progress=False)
    b = build_policy(path=tmp_path / "b", steps=3, progress=False)
    assert a.name == b.name
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert build_policy(path=tmp_path / "a", steps=3, progress=False) == a      # reused, not rebuilt
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "a").iterdir()] == [a.name]                   # no temp folders left
    c = build_policy(path=tmp_path / "a", steps=3, seed=1, progress=False)
    assert c != a and (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_tiny_policy_is_a_real_hf_checkpoint(tiny_policy):
    meta = json.loads((tiny_policy / "arealnb_build.json").read_text())
    assert 2e5 < meta["n_params"] < 5e5
    model, tok = load_policy(tiny_policy)
    assert model.config.hidden_size // model.config.num_attention_heads == 32   # vLLM CPU head sizes
    prompt = tok("3+4=")["input_ids"]
    lp = token_logprobs(model, prompt, tok("3,7", add_special_tokens=False)["input_ids"] + [EOS_ID])
    assert lp.shape == (4,) and np.all(lp <= 0)
    assert lp.sum() > np.log(0.05)   # trained: the right answer to an easy problem is likely


def test_unknown_size_is_rejected(tmp_path):
    from arealnb.errors import ModelBuildError

    with pytest.raises(ModelBuildError, match="unknown size"):
        build_policy(path=tmp_path, size="huge")
