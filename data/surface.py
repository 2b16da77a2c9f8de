"""The robot's visual surface: which geoms are visible, their triangles, points sampled on them.

Visible geoms are those MuJoCo renders with our settings: geom group in `groups`, rgba alpha > 0 (MuJoCo
skips alpha-0 geoms), attached to a robot link (not the world body). Meshes come from
`model.mesh_vert/mesh_face`; primitive geoms (box, sphere, capsule, cylinder, ellipsoid) are triangulated.
Points are kept in link-local (body) frames with a link id per point (link id = body id - 1), so posing
them is one rigid transform per link.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
from scipy.spatial import ConvexHull, QhullError

_GEOM = mujoco.mjtGeom
SKIPPED_TYPES = (_GEOM.mjGEOM_PLANE, _GEOM.mjGEOM_HFIELD, _GEOM.mjGEOM_SDF)
"""Geom types without a closed surface to sample (skipped; a robot link rarely uses them)."""


@dataclasses.dataclass(frozen=True)
class Surface:
    """Points on the visual surface, in link-local frames."""

    points_local: np.ndarray  # [P, 3] float32, link (body) frame
    link_ids: np.ndarray  # [P] int16
    colors: np.ndarray  # [P, 3] float32 in [0, 1], from the geom's material or rgba
    normals: np.ndarray  # [P, 3] float32 unit outward normals, link frame

    def arrays(self) -> dict[str, np.ndarray]:
        return dataclasses.asdict(self)


def visible_geoms(model: mujoco.MjModel, groups: tuple[int, ...]) -> np.ndarray:  # [G] geom ids
    """Geoms rendered and sampled: in `groups`, alpha > 0, on a robot link, with a closed surface."""
    ids = np.arange(model.ngeom)
    keep = (
        np.isin(model.geom_group, groups)
        & (model.geom_rgba[:, 3] > 0)
        & (model.geom_bodyid > 0)
        & ~np.isin(model.geom_type, SKIPPED_TYPES)
    )
    return ids[keep]


def geom_mesh(model: mujoco.MjModel, geom_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A geom's triangles in its body's frame: vertices [n, 3] float64, faces [m, 3] int."""
    kind = model.geom_type[geom_id]
    size = model.geom_size[geom_id]
    if kind == _GEOM.mjGEOM_MESH:
        mesh_id = model.geom_dataid[geom_id]
        v0, nv = model.mesh_vertadr[mesh_id], model.mesh_vertnum[mesh_id]
        f0, nf = model.mesh_faceadr[mesh_id], model.mesh_facenum[mesh_id]
        verts = model.mesh_vert[v0 : v0 + nv].astype(np.float64)
        faces = model.mesh_face[f0 : f0 + nf].astype(np.int64)
    else:
        primitive = _primitive_mesh(kind, size)
        if primitive is None:
            raise ValueError(f"geom {geom_id} ({model.geom(geom_id).name!r}): unsupported type {kind}")
        verts, faces = primitive
    rot = np.empty(9)
    mujoco.mju_quat2Mat(rot, model.geom_quat[geom_id])
    verts = np.asarray(verts, dtype=np.float64) @ rot.reshape(3, 3).T + model.geom_pos[geom_id]
    return verts, np.asarray(faces, dtype=np.int64)


def _primitive_mesh(kind: int, size: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices [n, 3] and faces [m, 3] of a primitive geom in its own frame (None for other types)."""
    import trimesh.creation as create  # slow to import: only robots with primitive geoms pay for it

    scale = np.ones(3)
    if kind == _GEOM.mjGEOM_BOX:
        mesh = create.box(extents=2.0 * size)
    elif kind == _GEOM.mjGEOM_SPHERE:
        mesh = create.icosphere(subdivisions=3, radius=size[0])
    elif kind == _GEOM.mjGEOM_ELLIPSOID:
        mesh, scale = create.icosphere(subdivisions=3, radius=1.0), size
    elif kind == _GEOM.mjGEOM_CAPSULE:
        mesh = create.capsule(height=2.0 * size[1], radius=size[0], count=[24, 24])
    elif kind == _GEOM.mjGEOM_CYLINDER:
        mesh = create.cylinder(radius=size[0], height=2.0 * size[1], sections=32)
    else:
        return None
    return mesh.vertices * scale, mesh.faces


def geom_color(model: mujoco.MjModel, geom_id: int) -> np.ndarray:  # [3] float in [0, 1]
    """The geom's material colour if it has a material, else its rgba (textures are not sampled)."""
    mat = model.geom_matid[geom_id]
    rgba = model.mat_rgba[mat] if mat >= 0 else model.geom_rgba[geom_id]
    return np.asarray(rgba[:3], dtype=np.float64)


def sample_surface(
    model: mujoco.MjModel, groups: tuple[int, ...], n: int, rng: np.random.Generator
) -> Surface:
    """`n` points uniformly by area over the visible geoms' triangles, in link frames."""
    geoms = visible_geoms(model, groups)
    if geoms.size == 0:
        raise ValueError(f"the robot has no visible geoms in geom groups {list(groups)}; pass --geom-groups")
    tris, tri_geom = [], []
    for g in geoms:
        verts, faces = geom_mesh(model, g)
        tris.append(verts[faces])  # [m, 3, 3]
        tri_geom.append(np.full(len(faces), g))
    tri = np.concatenate(tris)  # [T, 3, 3]
    tri_geom = np.concatenate(tri_geom)  # [T]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [T, 3]
    area = 0.5 * np.linalg.norm(cross, axis=1)
    cdf = np.cumsum(area)
    pick = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(tri) - 1)  # [n]
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    a, b, c = tri[pick, 0], tri[pick, 1], tri[pick, 2]
    points = (1 - r1)[:, None] * a + (r1 * (1 - r2))[:, None] * b + (r1 * r2)[:, None] * c  # [n, 3]
    normals = cross[pick] / np.maximum(np.linalg.norm(cross[pick], axis=1, keepdims=True), 1e-12)
    colors = np.stack([geom_color(model, g) for g in geoms])  # [G, 3]
    geom_row = np.searchsorted(geoms, tri_geom[pick])
    return Surface(
        points_local=points.astype(np.float32),
        link_ids=(model.geom_bodyid[tri_geom[pick]] - 1).astype(np.int16),
        colors=colors[geom_row].astype(np.float32),
        normals=normals.astype(np.float32),
    )


def hull_points(model: mujoco.MjModel, groups: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Convex-hull vertices of each link's visible geometry: points [Q, 3] (link frame), link ids [Q].

    The posed hull vertices bound the robot exactly, at a fraction of the mesh vertices' cost.
    """
    per_link: dict[int, list[np.ndarray]] = {}
    for g in visible_geoms(model, groups):
        per_link.setdefault(int(model.geom_bodyid[g]) - 1, []).append(geom_mesh(model, g)[0])
    points, links = [], []
    for link, chunks in sorted(per_link.items()):
        verts = np.concatenate(chunks)
        try:
            verts = verts[ConvexHull(verts).vertices]
        except (QhullError, ValueError):  # flat or tiny vertex sets: keep them all
            pass
        points.append(verts)
        links.append(np.full(len(verts), link))
    return np.concatenate(points), np.concatenate(links)


def link_poses(data: mujoco.MjData) -> np.ndarray:  # [L, 4, 4] link->world, float64
    """Every link's pose after `mj_kinematics`/`mj_forward` (link id = body id - 1)."""
    n = data.xpos.shape[0] - 1
    poses = np.zeros((n, 4, 4))
    poses[:, :3, :3] = data.xmat[1:].reshape(n, 3, 3)
    poses[:, :3, 3] = data.xpos[1:]
    poses[:, 3, 3] = 1.0
    return poses


def pose_points(points_local: np.ndarray, link_ids: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Points [P, 3] in link frames -> world [P, 3], given link poses [L, 4, 4]."""
    pose = poses[link_ids]  # [P, 4, 4]
    return np.einsum("pij,pj->pi", pose[:, :3, :3], points_local) + pose[:, :3, 3]


def bounding_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of the axis-aligned bounding box of `points` [N, 3] and the radius enclosing all of them."""
    center = 0.5 * (points.min(axis=0) + points.max(axis=0))
    return center, float(np.linalg.norm(points - center, axis=1).max())
