"""How a command ends (a user mistake is one line on stderr and exit status 2, never a traceback), and how
it gives a time.

Shared by ``attention-tuner`` (cli.py) and the sweep files run on their own (``python sweeps/x.py``,
``ray submit cluster.yaml sweeps/x.py``; sweep.main), so both end the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from attention_tuner.config import ConfigError

# ConfigError, DatasetError and CheckpointError are ValueErrors; OSError: a path or the disk (one line each).
USER_ERRORS = (ValueError, ConfigError, OSError)


def user_error_message(e: BaseException) -> str | None:
    """The one-line message for a user mistake, or None for anything else (a bug: let its traceback show)."""
    mlflow_errors = sys.modules.get("mlflow.exceptions")  # never imported here: if unloaded, not MLflow's
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or type(e).__name__}"
    if isinstance(e, USER_ERRORS) or (mlflow_errors is not None and isinstance(e, mlflow_errors.MlflowException)):
        lines = [line for line in str(e).splitlines() if line.strip()]
        prefix = "MLflow: " if not isinstance(e, USER_ERRORS) else ""
        return prefix + (lines[0].strip() if lines else type(e).__name__)
    return None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        first = message.splitlines()[0] if message else "bad arguments"
        self.exit(2, f"{self.prog}: error: {first} (see {self.prog} --help)\n")


def stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader is gone (poll reports an error on its write end)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no stdout, no poll (Windows), not a real file
        return False


def run_command(prog: str, command: Callable[[], int]) -> int:
    """``command()``'s exit status; Ctrl-C 130, a closed stdout 141, out of memory or a user mistake one line
    on stderr and 2. Anything else is a bug: its traceback shows."""
    try:
        return int(command() or 0)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)  # on a line of its own, after any progress bar
        return 130
    except BrokenPipeError as e:
        if stdout_closed():  # its reader went away (`| head`): nothing left to say, and no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail too
            return 141
        print(f"{prog}: error: {user_error_message(e)}", file=sys.stderr)  # another pipe: a worker, a socket
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory (a task, model or batch too large for this machine?)", file=sys.stderr)
        return 2
    except Exception as e:
        message = user_error_message(e)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def duration(seconds: float) -> str:
    """A time as a person reads it: '0.2 s', '14 s', '7 min', '3.5 h', '145 days'."""
    if seconds < 1:
        return f"{seconds:.1g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"
