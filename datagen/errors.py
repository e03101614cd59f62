"""The errors datagen raises for bad input; each message is one sentence naming the key or file.

Their own module so that every other module can raise them without importing the one that
defined them first (``config`` and ``design`` used to import each other for ``ConfigError``).
"""


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key."""


class DatasetError(RuntimeError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


class GenerateError(RuntimeError):
    """Generation cannot go on (a worker failed, the shard selection is invalid)."""
