"""The library's one error root: errors whose message is meant for the user as it is.

Every tool turns a `UserError` (and its subclasses) into one `error: ...` line on stderr and
exit code 2, never a traceback: the message already names the file, record or config key and
says what to do. Library code raises the most specific subclass; nothing here imports
TensorFlow, absl or the CLI, so any module (converter workers included) can use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Base for errors whose message is meant for the user as is (no traceback)."""


class BadInputError(UserError, ValueError):
    """An input file or record is unusable; the message names it and says what to do."""


class ConfigError(UserError, ValueError):
    """A config file, key or value is wrong; the message says which and what is valid."""
