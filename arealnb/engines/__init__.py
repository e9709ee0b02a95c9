"""Rollout engines behind :class:`arealnb.api.InferenceEngine`. vLLM specifics stay in ``vllm_engine``."""
