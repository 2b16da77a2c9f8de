"""`drrobot view`: look at a trained self-model in the browser, pose it with sliders, play trajectories.

    drrobot view outputs/panda-model/checkpoint
    drrobot view outputs/panda-model/checkpoint --trajectory out/clip/trajectory.json
    drrobot view outputs/panda-model/checkpoint --mode server --port 8081

Serves on http://127.0.0.1:8080 (the next free port if taken) until Ctrl-C. `--mode server` renders the browser's
camera with drrobot's own rasterizer instead of letting the browser splat the Gaussians. Needs viser:
`pip install 'drrobot[viewer]'`.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import tyro

from drrobot.apps.command import run_command
from drrobot.checkpoint import load_checkpoint
from drrobot.device import resolve_device
from drrobot.errors import DrRobotError, UsageError


@dataclasses.dataclass
class ViewConfig:
    """Look at a trained self-model in the browser: joint sliders, link colours, trajectory playback."""

    checkpoint: Annotated[Path, tyro.conf.Positional]
    """Checkpoint directory (e.g. outputs/panda-model/checkpoint)."""
    trajectory: Path | None = None
    """A trajectory.json (as `drrobot pose` writes it) to play back."""
    mode: Literal["client", "server"] = "client"
    """client: the browser splats the Gaussians; server: drrobot's rasterizer renders the browser's camera."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: every interface; anyone who can reach it sees the model)."""
    port: int = 8080
    """Port to listen on (the next free one if taken; 0: any free port)."""
    max_render_size: int = 640
    """Longest side, in pixels, of server-mode renders (the browser scales them to its window)."""
    robot: str | None = None
    """Robot name or MJCF/URDF path (default: the one recorded in the checkpoint)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto (server-mode renders and posing)."""


def run(config: ViewConfig) -> None:
    """Serve until Ctrl-C."""
    check_address(config.host, config.port)
    if config.max_render_size < 16:
        raise UsageError(f"--max-render-size must be at least 16 pixels, got {config.max_render_size}")
    try:
        from drrobot.viewer.server import RobotViewer
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] != "viser":
            raise
        raise DrRobotError("the viewer needs viser, which is not installed: pip install 'drrobot[viewer]'") from err
    model = load_checkpoint(config.checkpoint, robot=config.robot, device=resolve_device(config.device)).model
    viewer = RobotViewer(model, config.host, config.port, config.mode, config.trajectory, config.max_render_size)
    try:
        print(f"drrobot view: {model.robot.name} at {viewer.url} (Ctrl-C to stop)", flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("drrobot view: stopping", file=sys.stderr)
    finally:
        viewer.close()


def check_address(host: str, port: int) -> None:
    """UsageError unless this machine can listen on host:port (a busy port is fine: viser takes the next)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UsageError(f"--host {host!r} is not an address of this machine ({err.strerror})") from err
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except PermissionError as err:
            raise UsageError(f"--port {port} needs privileges on this machine; use a port above 1023") from err
        except OSError as err:
            if err.errno != errno.EADDRINUSE:  # viser moves on to the next port
                raise UsageError(f"cannot listen on {host}:{port} ({err.strerror})") from err


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        run(tyro.cli(ViewConfig, args=argv, prog="drrobot view", description=__doc__.splitlines()[0]))

    return run_command("drrobot view", job)


if __name__ == "__main__":
    sys.exit(main())
