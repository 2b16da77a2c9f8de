"""Files drrobot writes and reads: atomic writes (a file is absent or complete, never half-written) and JSON
documents checked against the fields a reader needs. Nothing is ever unpickled."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARKER = ".tmp-"
"""Temporary files are named `.<final name>.tmp-<pid>` in the final file's directory."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block succeeds it is fsynced and renamed over `path`,
    otherwise removed. For writers that want a file name (image, video and PLY libraries)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: str | os.PathLike, payload: bytes) -> None:
    """Write `payload` to `path` so that `path` is either absent or complete."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def write_json_atomic(path: str | os.PathLike, value: Any, indent: int = 2, sort_keys: bool = True) -> None:
    write_atomic(path, (json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n").encode())


def ensure_writable_dir(directory: str | os.PathLike) -> None:
    """Create `directory` if needed and prove it writable (a probe file written and removed); OSError if not."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / ".write-probe"
    write_atomic(probe, b"")
    probe.unlink()


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Delete temp files left by a killed run in `directory`; returns how many."""
    stale = [p for p in Path(directory).glob(f".*{TMP_MARKER}*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def read_json_document(path: str | os.PathLike, what: str, fields: dict[str, type | tuple[type, ...]],
                       error: type[Exception]) -> dict:  # fmt: skip
    """The JSON object in `path`, with each of `fields` present and of its type; otherwise `error(message)`
    naming the file, as `what` (e.g. "checkpoint file"), and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} not found")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{what} {path} is not readable JSON (corrupt or truncated?): {err}") from err
    return check_fields(value, f"{what} {path}", fields, error)


def check_fields(value: Any, where: str, fields: dict[str, type | tuple[type, ...]], error: type[Exception]) -> dict:
    """`value` as a dict with `fields` present and typed (for nested JSON objects); `where` names it."""
    if not isinstance(value, dict):
        raise error(f"{where} must be a JSON object, found {value!r:.60}")
    for name, kind in fields.items():
        if name not in value:
            raise error(f"{where} lacks the field {name!r}")
        if not isinstance(value[name], kind) or (isinstance(value[name], bool) and bool not in _tuple(kind)):
            raise error(f"{where}: field {name!r} must be {_type_names(kind)}, found {value[name]!r:.60}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_names(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "true/false", type(None): "null"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in _tuple(kind))
