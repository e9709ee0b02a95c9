"""arealnb's domain errors, all in one place. Messages name the bad value and the fix."""

from __future__ import annotations


class ArealnbError(Exception):
    """Base class of every error arealnb raises on purpose."""


class ConfigError(ArealnbError, ValueError):
    """A configuration value or combination is invalid."""


class ModelBuildError(ArealnbError, RuntimeError):
    """The embedded policy could not be built or its cache is unusable."""
