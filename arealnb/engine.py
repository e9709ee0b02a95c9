"""``arealnb.engine``: the rollout engine's public names (implementation in ``engines/vllm_engine.py``)."""

from .engines.vllm_engine import ThreadPolicy, VLLMEngine
from .engines.weights import WeightSpec

__all__ = ["VLLMEngine", "ThreadPolicy", "WeightSpec"]
