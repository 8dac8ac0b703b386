"""Which task failures Prefect retries: transient faults only; an error the same inputs would raise again fails at once."""

from __future__ import annotations

import errno
from typing import Any


class NotRetriable(Exception):
    """Mixin for errors that a Prefect retry of the same task cannot mend (or whose retries were already spent)."""


# Bad data, too few examples, bad configuration, a missing file: the same inputs fail the same way on every attempt.
PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    LookupError,
    NotImplementedError,
    FileNotFoundError,
    NotRetriable,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed: anything but the permanent types and a full disk (connection errors, timeouts,
    crashes do)."""
    return not isinstance(exc, PERMANENT_TYPES) and not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry the task only when it failed with a transient error."""
    exc = state.result(raise_on_failure=False, _sync=True)
    return not isinstance(exc, BaseException) or is_transient(exc)
