"""arealnb: AReaL-style fully asynchronous RL for LLMs at notebook scale (vLLM rollout + PyTorch learner).

Importing arealnb is cheap: torch, transformers and vllm load only when a module that needs them is used.
"""

from .api import GenerationOutput, InferenceEngine, Task, Trajectory
from .errors import (
                     ArealnbError,
                     ConfigError,
                     EngineClosedError,
                     EngineDeadError,
                     EngineInUseError,
                     InvalidRequestError,
                     ModelBuildError,
                     TrainerStateError,
                     WeightUpdateError,
)
from .tasks import Problem, RunningSum

__all__ = [
    "ArealnbError", "ConfigError", "EngineClosedError", "EngineDeadError", "EngineInUseError", "InvalidRequestError",
    "ModelBuildError", "TrainerStateError", "WeightUpdateError", "GenerationOutput", "InferenceEngine", "Task",
    "Trajectory", "Problem", "RunningSum",
]
__version__ = "0.1.0"

# Heavy names load on first use, so `import arealnb` stays cheap (no torch, no vLLM).
_LAZY = {"VLLMEngine": "engines", "RemoteVLLMEngine": "engines", "ThreadPolicy": "engines", "WeightSpec": "engines", "Trainer": "trainer",
         "TrainerConfig": "trainer", "StalenessManager": "staleness"}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'arealnb' has no attribute {name!r}")

