"""Helpers for the dataset tests: tiny settings that render in about a second."""

from __future__ import annotations

import dataclasses

import numpy as np

from drrobot.data.config import CameraConfig, DataConfig


def tiny_config(out, robot: str = "toy_arm", **overrides) -> DataConfig:
    """32x40 px, 3 views, a handful of poses, rendered in this process unless `workers` says otherwise."""
    fields = dict(
        robot=robot,
        out=out,
        train_poses=4,
        test_poses=2,
        canonical_samples=1,
        camera=CameraConfig(height=32, width=40, views=3),
        surface_points=256,
        workers=1,
    )
    fields.update(overrides)
    return dataclasses.replace(DataConfig(), **fields)


BEADS_XML = """<mujoco model="beads">
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="b0">
      <geom type="sphere" size="0.05" rgba="1 0 0 1"/>
      <geom type="capsule" fromto="0 0 0 0 0 0.2" size="0.015" rgba="1 0 0 1"/>
      <body name="b1" pos="0 0 0.2">
        <joint name="j1" axis="0 1 0" range="-1.5 1.5"/>
        <geom type="sphere" size="0.05" rgba="0 1 0 1"/>
        <geom type="cylinder" fromto="0 0 0 0 0 0.2" size="0.015" rgba="0 1 0 1"/>
        <body name="b2" pos="0 0 0.2">
          <joint name="j2" axis="1 0 0" range="-1.5 1.5"/>
          <geom type="sphere" size="0.05" rgba="0 0 1 1"/>
          <geom type="box" pos="0 0 0.1" size="0.01 0.01 0.1" rgba="0 0 1 1"/>
          <body name="b3" pos="0 0 0.2">
            <joint name="j3" axis="0 1 0" range="-1.5 1.5"/>
            <geom type="ellipsoid" size="0.05 0.05 0.05" rgba="1 1 0 1"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>
"""
"""A chain whose every link origin is the centre of a ball of that link: an unoccluded origin must show
its own link in the mask."""


def project(points, K, viewmat):
    """World points [N, 3] -> pixel coordinates [N, 2] and camera depth [N] with one view's K and viewmat."""
    cam = points @ viewmat[:3, :3].T.astype(np.float64) + viewmat[:3, 3]
    uv = cam @ K.T.astype(np.float64)
    return uv[:, :2] / uv[:, 2:], cam[:, 2]
