"""How every `drrobot` command ends: its result, or one clear line on stderr and an exit code, never a
traceback for input drrobot expects could be wrong.

Exit codes: 0 done, 2 usage errors (`drrobot.errors.UsageError`, and tyro's own argument errors), 1 other
failures (`DrRobotError`, `OSError`, out of memory), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch

from drrobot.errors import DrRobotError

OUT_OF_MEMORY_HINT = "lower the resolution, the batch sizes or the number of Gaussians and try again"


def run_command(prog: str, job: Callable[[], int | None], interrupted: str = "interrupted",
                out_of_memory: str = OUT_OF_MEMORY_HINT) -> int:  # fmt: skip
    """Run `job` (which parses its arguments and does the work) and turn expected failures into exit codes."""
    try:
        return int(job() or 0)
    except DrRobotError as err:
        return _fail(prog, str(err), err.exit_code)
    except OSError as err:
        return _fail(prog, describe_os_error(err), 1)
    except (torch.OutOfMemoryError, MemoryError) as err:
        return _fail(prog, f"out of memory ({str(err).splitlines()[0] if str(err) else type(err).__name__}): "
                           f"{out_of_memory}", 1)  # fmt: skip
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130


def describe_os_error(err: OSError) -> str:
    """'cannot write /proc/x: Permission denied' rather than '[Errno 13] ...'."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return reason
    verb = "cannot write" if isinstance(err, PermissionError) else "cannot use"
    return f"{verb} {os.fspath(err.filename)}: {reason}"


def _fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
