"""agentcast's exceptions: one class per kind of failure, each carrying the CLI's exit code for it.

The Rust extension raises them through :func:`from_code`, so a Python agent sees the same kinds
(and the same one-line messages) as a supervisor of the ``agentcast`` binary sees exit codes.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every agentcast error. ``exit_code`` is the CLI's exit code for the kind."""

    exit_code: int = 70


class UsageError(Error, ValueError):
    """A bad setting: the message names the flag (keyword) exactly as the CLI does (exit 2)."""

    exit_code = 2


class DataError(Error, ValueError):
    """Malformed input: a shader that does not compile, or frames that are not frames (exit 65)."""

    exit_code = 65


class NoInputError(Error):
    """An input file (a shader) is missing or unreadable (exit 66)."""

    exit_code = 66


class UnavailableError(Error):
    """Something required is not installed or not available: a GStreamer element, the
    requested encoder (exit 69)."""

    exit_code = 69


class SoftwareError(Error):
    """An internal, GPU or encoder failure while running (exit 70)."""

    exit_code = 70


class CantCreateError(Error):
    """The output cannot be created: a FIFO path that is taken, a TCP address in use (exit 73)."""

    exit_code = 73


class IOError(Error):  # noqa: A001 - agentcast.IOError, as the CLI's exit code 74 is named
    """Writing the output failed, other than the reader leaving (exit 74)."""

    exit_code = 74


class TemporaryError(Error):
    """A temporary failure, worth retrying: every NVENC slot is busy (exit 75)."""

    exit_code = 75


class ClosedError(Error, ValueError):
    """The stream is closed: by :meth:`Stream.close`, or because it ended by itself cleanly (the
    reader left a stdout stream, ``frames=``/``duration=`` was reached). ``exit_code`` is 0."""

    exit_code = 0


_BY_CODE = {
    cls.exit_code: cls
    for cls in (
        UsageError,
        DataError,
        NoInputError,
        UnavailableError,
        SoftwareError,
        CantCreateError,
        IOError,
        TemporaryError,
        ClosedError,
    )
}


def from_code(code: int, message: str) -> Error:
    """The exception for a CLI exit code (an unknown code is a :class:`SoftwareError`)."""
    cls = _BY_CODE.get(code, SoftwareError)
    err = cls(message)
    if cls is SoftwareError and code != SoftwareError.exit_code:
        err.exit_code = code
    return err
