"""drrobot: differentiable robot self-models (Gaussian splatting + implicit LBS) from MJCF/URDF."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# The repo's top-level folders `data/`, `train/`, `apps/` and `urdf/` install as `drrobot.data`,
# `drrobot.train`, `drrobot.apps` and `drrobot.urdf`, so no generic top-level names reach site-packages.
SUBPACKAGE_DIRS = {"data": "data", "train": "train", "apps": "apps", "urdf": "urdf"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = ["drrobot" + ("." + p if p else "") for p in [""] + find_packages("drrobot")]
    package_dir = {"drrobot": "drrobot"}
    for name, folder in SUBPACKAGE_DIRS.items():
        root = f"drrobot.{name}"
        packages.append(root)
        package_dir[root] = folder
        for sub in find_packages(folder):
            packages.append(f"{root}.{sub}")
            package_dir[f"{root}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return packages, package_dir


packages, package_dir = _packages()

setup(
    name="drrobot",
    version="0.1.0",
    description="Differentiable robot rendering: Gaussian-splatting robot self-models driven by joint angles",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    include_package_data=True,
    package_data={
        "drrobot.urdf": ["**/*"],
        "drrobot.render": ["csrc/*.cpp", "csrc/*.h"],
        "drrobot.data": ["README.md"],
    },
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "mujoco>=3.1",
        "mujoco-menagerie>=2026.10",
        "pytorch-kinematics>=0.7",
        "tyro>=0.8",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "imageio>=2.30",
        "imageio-ffmpeg>=0.4",  # mp4 read/write for `drrobot pose` (ships its own ffmpeg binary)
        "matplotlib>=3.5",  # joint plots of the applications
        "trimesh>=4.0",
        "plyfile>=1.0",
        "scipy>=1.10",
        "gsplat>=1.5.3",  # its densification strategies run anywhere; its CUDA rasterizer is used on GPUs
        "ninja",  # builds drrobot's C++ CPU compositing kernel on first use
    ],
    extras_require={
        "ray": ["ray>=2.9"],
        "wandb": ["wandb>=0.16"],
        "clip": ["open_clip_torch>=2.24", "torchvision"],
        "video": ["diffusers>=0.27", "transformers>=4.40", "torchvision"],
        "viewer": ["viser>=1.0"],
        "retarget": ["opencv-python-headless>=4.8"],
        "dev": ["pytest>=8", "wandb>=0.16", "torchvision", "viser>=1.0", "selenium>=4.10", "open_clip_torch>=2.24",
                "diffusers>=0.27", "transformers>=4.40", "opencv-python-headless>=4.8"],
    },
    entry_points={"console_scripts": ["drrobot=drrobot.apps.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: Apache Software License"],
)
