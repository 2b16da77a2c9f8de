"""Robot registry: a robot by short name (MuJoCo Menagerie), the embedded default, or any MJCF/URDF path.

>>> robot = load_robot("panda")          # embedded copy, no network
>>> robot = load_robot("ur5e")           # Menagerie: downloaded by `mujoco-menagerie`, or MENAGERIE_ROOT offline
>>> robot = load_robot("path/to/arm.urdf")
>>> model = robot.mj_model()             # mujoco.MjModel
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import mujoco

from drrobot.errors import UsageError

URDF_DIR = Path(__file__).resolve().parent.parent / "urdf"
"""Robots shipped with drrobot (repo checkout: `urdf/`; installed: `drrobot/urdf`)."""
if not URDF_DIR.is_dir():  # installed as the `drrobot.urdf` package
    URDF_DIR = Path(__file__).resolve().parent / "urdf"

DEFAULT_ROBOT = "panda"


@dataclasses.dataclass(frozen=True)
class MenagerieEntry:
    """Where a short name lives in MuJoCo Menagerie."""

    directory: str  # Menagerie robot directory, e.g. "franka_emika_panda"
    entry: str  # entry point (robot XML, no scene), e.g. "panda"
    embedded: str | None = None  # path under URDF_DIR of a vendored copy, if any


MENAGERIE_ROBOTS: dict[str, MenagerieEntry] = {
    "panda": MenagerieEntry("franka_emika_panda", "panda", embedded="franka_emika_panda/panda.xml"),
    "ur5e": MenagerieEntry("universal_robots_ur5e", "ur5e"),
    "shadow_hand": MenagerieEntry("shadow_hand", "right_hand"),
    "g1": MenagerieEntry("unitree_g1", "g1"),
    "h1": MenagerieEntry("unitree_h1", "h1"),
    "go1": MenagerieEntry("unitree_go1", "go1"),
    "go2": MenagerieEntry("unitree_go2", "go2"),
    "google_robot": MenagerieEntry("google_robot", "robot"),
    "vx300s": MenagerieEntry("trossen_vx300s", "vx300s"),
    "xarm7": MenagerieEntry("ufactory_xarm7", "xarm7"),
}

TEST_ROBOTS: dict[str, str] = {
    "toy_arm": "toy_arm.xml",
    "toy_gripper": "toy_gripper.xml",
    "toy_floating": "toy_floating.xml",
}
"""Tiny robots of primitive geoms under `urdf/`, for fast tests."""


class RobotNotFoundError(UsageError):
    """An unknown robot name or a missing/malformed robot description file."""


@dataclasses.dataclass(frozen=True)
class RobotDescription:
    """A resolved robot: its name and the MJCF or URDF file that describes it."""

    name: str  # short name, or the file stem for a path
    path: Path  # the MJCF (.xml) or URDF (.urdf) file
    source: str  # "embedded", "menagerie", "test" or "file"

    @property
    def format(self) -> str:
        return "urdf" if self.path.suffix.lower() == ".urdf" else "mjcf"

    def mj_model(self) -> mujoco.MjModel:
        """Compile the description with MuJoCo; errors name the file."""
        return _compile(self.path)

    @functools.cached_property
    def content_hash(self) -> str:
        """sha256 over the description file and every mesh/texture/included file it references."""
        return description_hash(self.path)


def known_robots() -> list[str]:
    """Short names accepted by `load_robot`."""
    return sorted(MENAGERIE_ROBOTS) + sorted(TEST_ROBOTS)


def load_robot(name_or_path: str | Path) -> RobotDescription:
    """Resolve a short name (see `known_robots()`) or an MJCF/URDF file path to a `RobotDescription`.

    Short names of Menagerie robots resolve through the `mujoco-menagerie` package: offline it reads
    `MENAGERIE_ROOT`, online it downloads into its cache. `panda` uses the copy embedded in drrobot.
    """
    key = str(name_or_path)
    if key in MENAGERIE_ROBOTS:
        entry = MENAGERIE_ROBOTS[key]
        if entry.embedded is not None and (URDF_DIR / entry.embedded).is_file():
            return RobotDescription(key, URDF_DIR / entry.embedded, "embedded")
        return RobotDescription(key, _menagerie_path(key, entry), "menagerie")
    if key in TEST_ROBOTS:
        return RobotDescription(key, URDF_DIR / TEST_ROBOTS[key], "test")
    path = Path(key).expanduser()
    if path.suffix.lower() in (".xml", ".mjcf", ".urdf") or path.exists():
        if not path.is_file():
            raise RobotNotFoundError(f"robot description file not found: {path}")
        return RobotDescription(path.stem, path.resolve(), "file")
    raise RobotNotFoundError(
        f"unknown robot {key!r}; known robots: {', '.join(known_robots())}; or pass an MJCF/URDF file path"
    )


def _menagerie_path(name: str, entry: MenagerieEntry) -> Path:
    import mujoco_menagerie

    try:
        return mujoco_menagerie.get(entry.directory).xml(entry.entry)
    except mujoco_menagerie.MenagerieError as err:
        raise RobotNotFoundError(
            f"robot {name!r} (Menagerie '{entry.directory}') is not available: {err}. Offline, unpack the "
            "Menagerie robot folders into a directory and set MENAGERIE_ROOT to it."
        ) from err


@functools.lru_cache(maxsize=16)
def _compile_cached(path: str, mtime_ns: int) -> mujoco.MjModel:
    try:
        return mujoco.MjModel.from_xml_path(path)
    except ValueError as err:  # MuJoCo reports parse/compile errors as ValueError
        raise RobotNotFoundError(f"cannot load robot description {path}: {err}") from err


def _compile(path: Path) -> mujoco.MjModel:
    if not path.is_file():
        raise RobotNotFoundError(f"robot description file not found: {path}")
    return _compile_cached(str(path), path.stat().st_mtime_ns)


def description_hash(path: Path) -> str:
    """sha256 of a robot description and the asset files it references (meshes, textures, includes)."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes())
    spec = mujoco.MjSpec.from_file(str(path)) if path.suffix.lower() != ".urdf" else None
    if spec is not None:
        base = path.parent
        meshdir = base / (spec.meshdir or "")
        texturedir = base / (spec.texturedir or "")
        files = [meshdir / m.file for m in spec.meshes if m.file]
        files += [texturedir / t.file for t in spec.textures if t.file]
        for asset in sorted(set(files)):
            digest.update(asset.name.encode())
            if asset.is_file():
                digest.update(asset.read_bytes())
    return digest.hexdigest()


def link_names(model: mujoco.MjModel) -> list[str]:
    """The robot's links: every MuJoCo body except the world, in body order (link id = body id - 1).

    Unnamed bodies are called `body<id>`. Kinematics, dataset masks and skinning all use this order.
    """
    return [model.body(i).name or f"body{i}" for i in range(1, model.nbody)]
