"""Offline batch generation with vLLM's ``LLM``, in this process, with per-token logprobs.

The plain-vLLM baseline: what the asyncio engine is measured against, and the simplest way to sample
from a policy in a notebook. Settings follow ../shared/VLLM_CPU.md: ``enforce_eager=True`` (torch.compile
costs 20-50 s of start-up for ~9%), an explicit KV-cache size (vLLM would otherwise take ~11 GiB),
token-id prompts, fp32 when logprobs must match the learner. ``LLM`` is built, read and shut down by
``arealnb.engines.vllm_common``, exactly as for ``VLLMEngine`` (sampler log-probs, no chunked prefill, the
one-engine-per-process rule).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .api import GenerationOutput
from .engines import vllm_common as vc


class OfflineGenerator:
    """``vllm.LLM`` in this process; use as a context manager or call :meth:`close`.

    Parameters
    ----------
    model_path : an HF causal-LM folder (e.g. from :func:`arealnb.models.build_policy`).
    dtype : ``"float32"`` (logprobs match the learner to ~1e-5) or ``"bfloat16"`` (~2.4x faster, up to
        ~0.7 nats off on a few % of tokens).
    kv_cache_bytes : KV-cache size; 64 MiB holds thousands of tokens of the tiny policy.
    max_model_len, max_num_seqs : longest sequence (prompt + output) and largest batch.
    """

    def __init__(self, model_path: str | os.PathLike, dtype: str = "float32", kv_cache_bytes: int = 64 << 20,
                 max_model_len: int = 512, max_num_seqs: int = 64, seed: int = 0):
        self.model_path = Path(model_path)
        self.llm = None
        self._claim = vc.claim_process(f"OfflineGenerator({self.model_path.name})")
        try:
            self.llm = vc.build_llm(self.model_path, dtype=dtype, kv_cache_bytes=kv_cache_bytes,
                                    max_num_seqs=max_num_seqs, max_model_len=max_model_len, seed=seed)
        except BaseException:
            vc.release_process(self._claim)
            raise
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[list[int]], max_new_tokens: int = 64, temperature: float = 1.0,
                 seed: int | None = None, ignore_eos: bool = False, progress: bool = False) -> list[GenerationOutput]:
        """Sample one completion per prompt (token-id lists); returns them in prompt order, as the same
        record the asyncio engine returns (every token tagged version 0: the weights never change here).

        ``ignore_eos=True`` always generates ``max_new_tokens`` (for throughput measurements).
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sp = SamplingParams(temperature=temperature, max_tokens=max_new_tokens, logprobs=0, seed=seed,
                            ignore_eos=ignore_eos)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sp,
                                 use_tqdm=progress)
        samples = []
        for p, o in zip(prompts, outs, strict=True):
            c = o.outputs[0]
            ids = list(c.token_ids)
            lp = np.array(vc.sampled_logprobs(ids, c.logprobs), dtype=np.float64)
            samples.append(GenerationOutput(request_id=str(o.request_id), prompt_ids=list(p), output_ids=ids,
                                            logprobs=lp, versions=np.zeros(len(ids), dtype=np.int64),
                                            finish_reason=vc.finish_reason(c.finish_reason, len(ids), max_new_tokens),
                                            text=c.text))
        return samples

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        vc.shutdown_llm(llm)
        del llm
        vc.release_process(self._claim)

    def __enter__(self) -> OfflineGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
