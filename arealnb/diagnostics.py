"""Checks of generated data against the policies that produced it (used by notebooks and tests)."""

from __future__ import annotations

import numpy as np


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
