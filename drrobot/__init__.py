"""drrobot: differentiable robot self-models driven by joint angles, rendered with 3D Gaussians."""

__version__ = "0.1.0"
