"""Looking at generated data: sample tables, log-prob checks against the policies that produced it, and a
policy's reward on fresh problems (used by notebooks, tests and ``python -m arealnb``)."""

from __future__ import annotations

import os

import numpy as np

from .api import GenerationOutput


def logprob_check(outputs, policies: dict) -> pd.DataFrame:  # noqa: F821
    """Per request and version segment: tokens, and max |engine logprob - HF recompute| under that version.

    Parameters
    ----------
    outputs : iterable of :class:`arealnb.api.GenerationOutput`.
    policies : ``{version: HF model}``; each token is checked against the model of the version that produced
        it, recomputing the whole sequence with that model (what ``interrupt="recompute"`` promises).
    """
    import pandas as pd

    from .models import token_logprobs

    rows = []
    cache: dict[tuple[int, int], np.ndarray] = {}
    for i, o in enumerate(outputs):
        for v in np.unique(o.versions):
            mask = o.versions == v
            row = {"request": i, "version": int(v), "tokens": int(mask.sum()),
                   "first_token": int(np.argmax(mask)), "finish_reason": o.finish_reason}
            for pv, model in policies.items():
                key = (i, pv)
                if key not in cache:
                    cache[key] = token_logprobs(model, o.prompt_ids, o.output_ids)
                row[f"max_gap_vs_v{pv}"] = float(np.abs(cache[key][mask] - o.logprobs[mask]).max())
            rows.append(row)
    return pd.DataFrame(rows)


def samples_frame(samples: list[GenerationOutput], problems=None, task=None):
    """One row per sample: prompt, completion, tokens, finish reason, mean logprob (+ answer, reward)."""
    import pandas as pd

    rows = []
    for i, s in enumerate(samples):
        row = {"completion": s.text, "n_tokens": len(s.output_ids), "finish_reason": s.finish_reason,
               "mean_logprob": float(np.mean(s.logprobs)) if len(s.logprobs) else float("nan")}
        if problems is not None:
            p = problems[i]
            row = {"prompt": p.prompt, "n_terms": p.n_terms, "answer": p.answer, **row}
            if task is not None:
                row["reward"] = task.reward(s.text, p)
        rows.append(row)
    return pd.DataFrame(rows)


def logprob_gaps(model, samples: list[GenerationOutput]) -> np.ndarray:
    """``|engine logprob - HF recomputed logprob|`` of every generated token, concatenated (float64)."""
    from .models import token_logprobs

    return np.concatenate([np.abs(token_logprobs(model, s.prompt_ids, s.output_ids) - s.logprobs)
                           for s in samples if s.output_ids] or [np.zeros(0)])


def evaluate_policy(model_path: str | os.PathLike, task, n: int = 400, seed: int = 123,
                    max_new_tokens: int = 200, temperature: float = 1.0):
    """Reward of a policy on ``n`` fresh task problems, one sample each: ``(mean_reward, frame)``, where the
    frame has one row per problem (see :func:`samples_frame`)."""
    from .models import load_policy
    from .offline import OfflineGenerator

    _, tok = load_policy(model_path)
    problems = task.sample(np.random.default_rng(seed), n)
    with OfflineGenerator(model_path) as gen:
        samples = gen.generate([tok(p.prompt)["input_ids"] for p in problems], max_new_tokens=max_new_tokens,
                               temperature=temperature, seed=seed)
    df = samples_frame(samples, problems, task)
    return float(df.reward.mean()), df
