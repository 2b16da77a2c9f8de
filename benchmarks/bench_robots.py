"""Train and evaluate any list of robots with one preset, then print (and optionally write) the table of
BENCHMARKS.md's `## All ten robots` section.

    MENAGERIE_ROOT=... python benchmarks/bench_robots.py panda ur5e xarm7 --preset cpu-quick --table robots.md
    python benchmarks/bench_robots.py g1 h1 go1 go2 --backend ray --ray-address local   # parallel Ray tasks

Each robot runs as an independent job (datasets in `<root>/<robot>-data`, runs in `<root>/<robot>-model`); one
failing (unknown name, a description that does not compile, out of memory) leaves the others running, and the
table says why. Exit code 1 when any robot failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import drrobot.apps  # noqa: E402,F401  (first: the CLI's OpenMP waiting policy, set before torch loads)
from drrobot.io import write_atomic  # noqa: E402
from drrobot.train.config import PRESETS  # noqa: E402
from drrobot.train.fleet import collect_run, robots_table, train_robots  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("robots", nargs="+", help="short names (drrobot.robots.known_robots()) or MJCF/URDF paths")
    parser.add_argument("--preset", default="cpu-quick", choices=sorted(PRESETS))
    parser.add_argument("--root", type=Path, default=Path("outputs"), help="where datasets and runs go")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", default="auto", help='"auto", host:port, or "local" (start Ray here)')
    parser.add_argument("--eval-views", type=int, default=None, help="test views per robot (default: the preset's)")
    parser.add_argument("--table", type=Path, default=None, help="also write the table to this markdown file")
    parser.add_argument("--table-only", action="store_true", help="tabulate finished runs in --root, train nothing")
    args = parser.parse_args()
    overrides = {} if args.eval_views is None else {"eval_views": args.eval_views}
    if args.table_only:
        runs = [collect_run(robot, args.root) for robot in args.robots]
    else:
        runs = train_robots(args.robots, args.preset, args.root, overrides, args.backend, args.ray_address)
    table = robots_table(runs, args.preset)
    print(table)
    if args.table is not None:
        write_atomic(args.table, table.encode())
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
