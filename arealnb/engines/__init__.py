"""Rollout engines behind :class:`arealnb.api.InferenceEngine`; vLLM specifics stay in ``vllm_engine``.

``from arealnb.engines import VLLMEngine`` (also ``arealnb.VLLMEngine``). Importing this package does not
import vLLM: that happens when an engine starts.
"""

from .remote import RemoteVLLMEngine
from .vllm_engine import ThreadPolicy, VLLMEngine
from .weights import WeightSpec

__all__ = ["VLLMEngine", "RemoteVLLMEngine", "ThreadPolicy", "WeightSpec"]
