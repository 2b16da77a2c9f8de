"""The base class of drrobot's expected failures.

Every error drrobot raises on purpose (a bad argument, a missing or damaged file, a robot that cannot be
loaded) derives from `DrRobotError`, and its message names the argument or file and says what to do. The
`drrobot` commands catch it (and `OSError`) and print the message instead of a traceback: exit code 2 for
usage errors (`UsageError`), 1 for every other failure. Anything else escaping is a bug in drrobot.
"""

from __future__ import annotations


class DrRobotError(Exception):
    """An expected failure; `exit_code` is what a command returns for it."""

    exit_code = 1


class UsageError(DrRobotError, ValueError):
    """Arguments or settings that cannot work (a command exits with code 2)."""

    exit_code = 2
