"""arealnb's domain errors, all in one place. Messages name the bad value and the fix."""

from __future__ import annotations


class ArealnbError(Exception):
    """Base class of every error arealnb raises on purpose."""


class ConfigError(ArealnbError, ValueError):
    """A configuration value or combination is invalid."""


class ModelBuildError(ArealnbError, RuntimeError):
    """The embedded policy could not be built or its cache is unusable."""


class WeightUpdateError(ArealnbError, ValueError):
    """A weight push was refused before it touched the engine (wrong names, shapes, dtypes, values or
    version); the engine keeps serving the previous weights."""


class EngineDeadError(ArealnbError, RuntimeError):
    """The inference engine crashed; every pending and later request fails with this. Start a new engine."""


class EngineClosedError(ArealnbError, RuntimeError):
    """The engine was closed (or never started)."""


class InvalidRequestError(ArealnbError, ValueError):
    """A generation request was refused (empty prompt, token id out of range, too long, bad parameters)."""


class EngineInUseError(ArealnbError, RuntimeError):
    """Another vLLM engine is live in this process. vLLM's state is process-wide: one engine per kernel (close
    the other first), or a separate process for a second one."""


class TrainerStateError(ArealnbError, RuntimeError):
    """The trainer cannot do this in its current state (already running, closed, or a checkpoint unreadable)."""
