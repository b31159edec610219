"""The root of microseg's exceptions: catch ``MicrosegError`` to catch everything the engine raises on purpose."""

__all__ = ["MicrosegError", "ConfigError"]


class MicrosegError(Exception):
    """Base class of every error microseg raises deliberately; messages say what to do."""


class ConfigError(MicrosegError):
    """Settings or command-line options that cannot work together."""
