"""Execution backends: render samples in this process, a local process pool, or on a Ray cluster.

Each backend takes the samples still to do and yields a `SampleStats` per sample as it completes. Workers
build one `SampleMaker` each (a GL context per process) and, locally, write their samples atomically.
"""

from __future__ import annotations

import collections
import dataclasses
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from drrobot.data.config import DataConfig
from drrobot.io import write_atomic
from drrobot.data.mujoco_render import select_gl_backend
from drrobot.data.sample import SampleMaker, SampleStats, sample_path
from drrobot.robots import description_hash
from drrobot.errors import DrRobotError

Task = tuple[str, int]  # (split, index)
RAY_WINDOW = 256  # Ray tasks in flight at once

_maker: SampleMaker | None = None
_out: Path | None = None
_init_error: str | None = None  # a pool worker that failed to start reports it on its first task


class WorkerError(DrRobotError, RuntimeError):
    """A sample failed in a worker (the message names the sample)."""


def run(
    tasks: list[Task], config: DataConfig, robot_path: Path, content_hash: str, workers: int
) -> Iterator[SampleStats]:
    """Render and write `tasks` under `config.out` with the configured backend."""
    if config.backend == "ray":
        yield from _run_ray(tasks, config, robot_path, content_hash)
    elif workers == 1:
        yield from _run_here(tasks, config, robot_path)
    else:
        yield from _run_pool(tasks, config, robot_path, workers)


def _run_here(tasks: list[Task], config: DataConfig, robot_path: Path) -> Iterator[SampleStats]:
    maker = SampleMaker(config, robot_path)
    try:
        for split, index in tasks:
            yield _write(maker, config.out, split, index)
    finally:
        maker.close()


def _run_pool(tasks: list[Task], config: DataConfig, robot_path: Path, workers: int) -> Iterator[SampleStats]:
    # spawn: fresh interpreters, each with its own GL context (EGL/OSMesa state does not survive fork).
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    initargs = (config, str(robot_path), select_gl_backend(config.gl), threads)
    pool = context.Pool(workers, initializer=_init_worker, initargs=initargs)
    try:
        yield from pool.imap_unordered(_pool_task, tasks, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _init_worker(config: DataConfig, robot_path: str, gl_backend: str, threads: int) -> None:
    global _maker, _out, _init_error
    _die_with_parent()
    config = dataclasses.replace(config, gl=gl_backend)  # probed once by the parent
    os.environ.setdefault("LP_NUM_THREADS", str(threads))  # software GL (llvmpipe): share the cores
    try:  # an initializer that raises makes multiprocessing restart the worker forever
        _maker, _out = SampleMaker(config, robot_path), config.out
    except Exception as err:
        _init_error = f"{type(err).__name__}: {err}"


def _pool_task(task: Task) -> SampleStats:
    if _maker is None:
        raise WorkerError(f"a worker process failed to start: {_init_error}")
    return _write(_maker, _out, *task)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the parent dies (e.g. killed), instead of rendering on alone."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _write(maker: SampleMaker, root: Path, split: str, index: int) -> SampleStats:
    try:
        return maker.write(root, split, index)
    except Exception as err:
        raise WorkerError(f"sample {split}/{index:06d} failed: {type(err).__name__}: {err}") from err


def _run_ray(
    tasks: list[Task], config: DataConfig, robot_path: Path, content_hash: str
) -> Iterator[SampleStats]:
    try:
        import ray
    except ImportError as err:
        raise WorkerError(
            "--backend ray needs Ray, which is optional: `pip install ray` (or `pip install drrobot[ray]`), "
            "or use the default --backend multiprocessing"
        ) from err
    connected_here = not ray.is_initialized()
    try:
        ray.init(address=config.ray_address, ignore_reinit_error=True, log_to_driver=False)
    except Exception as err:  # ray raises ConnectionError / RuntimeError variants
        raise WorkerError(
            f"cannot connect to a Ray cluster at --ray-address {config.ray_address!r}: {err}. "
            "Start one with `ray start --head`, pass its host:port, or use --ray-address local"
        ) from err
    try:
        yield from _ray_samples(ray, tasks, config, robot_path, content_hash)
    finally:
        if connected_here:
            ray.shutdown()


def _ray_samples(
    ray, tasks: list[Task], config: DataConfig, robot_path: Path, content_hash: str
) -> Iterator[SampleStats]:
    remote = ray.remote(_ray_task)
    pending, queue = {}, collections.deque(tasks)
    while queue or pending:
        while queue and len(pending) < RAY_WINDOW:
            split, index = queue.popleft()
            pending[remote.remote(config, str(robot_path), content_hash, split, index)] = (split, index)
        done, _ = ray.wait(list(pending), num_returns=1)
        split, index = pending.pop(done[0])
        try:
            payload, stats = ray.get(done[0])
        except Exception as err:
            raise WorkerError(f"sample {split}/{index:06d} failed on the Ray cluster: {err}") from err
        write_atomic(sample_path(config.out, split, index), payload)  # the driver writes: no shared filesystem
        yield stats


def _ray_task(config: DataConfig, robot_path: str, content_hash: str, split: str, index: int):
    """On a Ray worker: render one sample (the maker is cached per worker process) and return its bytes."""
    global _maker
    if _maker is None or _maker.config != config:
        if description_hash(Path(robot_path)) != content_hash:
            raise RuntimeError(f"the robot description {robot_path} on this Ray node differs from the driver's")
        _maker = SampleMaker(config, robot_path)
    return _maker.file_bytes(split, index)
