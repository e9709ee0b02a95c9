"""arealnb: AReaL-style fully asynchronous RL for LLMs at notebook scale (vLLM rollout + PyTorch learner).

Importing arealnb is cheap: torch, transformers and vllm load only when a module that needs them is used.
"""

from .api import GenerationOutput, InferenceEngine
from .errors import (
                     ArealnbError,
                     ConfigError,
                     EngineClosedError,
                     EngineDeadError,
                     EngineInUseError,
                     InvalidRequestError,
                     ModelBuildError,
                     WeightUpdateError,
)
from .tasks import Problem, RunningSum

__all__ = [
    "ArealnbError", "ConfigError", "EngineClosedError", "EngineDeadError", "EngineInUseError",
    "InvalidRequestError",
    "ModelBuildError", "WeightUpdateError", "GenerationOutput", "InferenceEngine", "Problem", "RunningSum",
]
__version__ = "0.1.0"
