"""Training a `KeypointNet` on rendered views (`drrobot.data.keypoint_data`), resumable, with augmentation.

Each step draws `batch` views and warps each into the network input with a random zoom (`zoom`, < 1 shows the
whole frame smaller on grey, as a letterboxed image), shift and rotation (`warp`), then jitters saturation, colour
balance, contrast and brightness, blurs some and adds noise (`jitter_colours`). The loss is the cross-entropy of each keypoint's spatial
softmax against a Gaussian of `sigma` cells at its true position, over the keypoints inside the warped view.
Every `save_every` steps the weights and the optimiser state are written (atomically) to the output folder's
`train_state.safetensors`; a run started again on the same folder continues from there. The last `validation`
fraction of the views (whole scenes, the last ones) is held out and scored at the end: median and 90th-percentile
pixel error of the detections in the full frames, and the share within 2% of the image width (both looks, and
the first alone). A `crop_share` of the views are crops around the robot, as the detector's second look sees it,
and a `part_share` magnify a part of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from drrobot.io import atomic_path, write_json_atomic
from drrobot.vision.keypoint_net import (STRIDE, KeypointDetector, KeypointNet, KeypointSpec, NetConfig, box_zoom,
                                         keypoint_box, normalize_images, sample_view)  # fmt: skip

STATE_FILE = "train_state.safetensors"
CROP_FILL_SPREAD = 1.3  # the second-look views' fill varies by up to this factor either way of `net.crop_fill`
REPORT_FILE = "training.json"


@dataclasses.dataclass(frozen=True)
class KeypointTrainConfig:
    """Optimisation and augmentation of the detector's training."""

    steps: int = 12000
    """Panda, 2 CPU cores: ~31-38 min. Against 4000 steps, the look-alikes' median detection error fell from
    6.9-8.3 px to 5.0-6.0 px of 640 (BENCHMARKS.md)."""
    batch: int = 32
    lr: float = 2e-3
    """AdamW's peak learning rate (cosine decay to 5% after a 100-step warm-up)."""
    weight_decay: float = 1e-4
    sigma: float = 1.0
    """Standard deviation of the target heatmaps, in heatmap cells."""
    zoom: tuple[float, float] = (0.7, 1.5)
    """Range of the views' magnification (log-uniform)."""
    shift: float = 0.15
    """Largest shift of the view, as a fraction of the image size."""
    rotation_deg: float = 10.0
    crop_share: float = 0.5
    """Share of the views that are second looks (crops around the robot; with `net.crop_fill` > 0)."""
    part_share: float = 0.3
    """Share of the views (taken from the whole-image ones) that magnify a part of the robot: the keypoints' box
    `part_fill` times the input's size, centred anywhere in its middle 70%. The detector never looks so closely,
    but learning the links' detail so made its second look more precise (look-alikes: from scratch 15 of 40 frames
    under 10 deg instead of 12, BENCHMARKS.md)."""
    part_fill: float = 1.4
    """Size of the keypoints' box in a part view, in input sizes (spread as the crops' fill)."""
    validation: float = 0.05
    save_every: int = 200
    seed: int = 0
    net: NetConfig = dataclasses.field(default_factory=NetConfig)


def train_detector(images: np.ndarray, uv: np.ndarray, in_view: np.ndarray, spec: KeypointSpec,
                   config: KeypointTrainConfig, out: Path, progress: bool = True) -> KeypointDetector:  # fmt: skip
    """Train on views images [N, H, W, 3] uint8 with keypoints uv [N, K, 2] (pixels) and in_view [N, K]; writes
    the detector (`KeypointDetector.save`) and `training.json` into `out` and returns the detector."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    N = len(images)
    held = max(1, int(round(config.validation * N))) if N > 1 else 0
    train_index = np.arange(N - held)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = KeypointNet(spec.count, config.net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, history = _resume(out, net, optimizer, config)
    source = torch.from_numpy(images)  # [N, H, W, 3] uint8, shared memory
    targets = torch.from_numpy(uv).float(), torch.from_numpy(in_view)
    net.train()
    began = time.perf_counter()
    bar = tqdm(range(start, config.steps), desc="keypoint detector", unit="step", disable=not progress,
               initial=start, total=config.steps)  # fmt: skip
    for step in bar:
        pick = torch.from_numpy(train_index)[torch.randint(len(train_index), (config.batch,), generator=generator)]
        x, kp, visible = warp(source[pick], targets[0][pick], targets[1][pick], config, generator)
        x = jitter_colours(x, generator)
        loss = heatmap_loss(net(normalize_images(x)), kp / STRIDE, visible, config.sigma)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(history[-50:]):.3f}")
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            _save_state(out, net, optimizer, step + 1, history)
    detector = KeypointDetector(net, spec, config.net)
    detector.save(out)
    report = {"steps": config.steps, "seconds": time.perf_counter() - began, "views": N, "held_out_views": held,
              "loss_last_100": float(np.mean(history[-100:])) if history else None, "config": _jsonable(config)}  # fmt: skip
    if held:
        report["validation"] = validate(detector, images[N - held :], uv[N - held :], in_view[N - held :])
    write_json_atomic(out / REPORT_FILE, report)
    return detector


def warp(images: Tensor, uv: Tensor, in_view: Tensor, config: KeypointTrainConfig,
         generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Random views of images [B, H, W, 3] uint8 at the network input size -> images [B, h, w, 3] in [0, 1],
    keypoints [B, K, 2] (input pixels) and visible [B, K] (in view before and after). A `crop_share` of them
    (with `net.crop_fill` > 0) are the detector's second look: the visible keypoints' box filling about
    `crop_fill` of the input."""
    B, H, W, _ = images.shape
    w, h = config.net.input_width, config.net.input_height

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(B, *shape, generator=generator)

    zoom = torch.exp(uniform(math.log(config.zoom[0]), math.log(config.zoom[1]))) * min(w / W, h / H)  # input px per image px
    centre = torch.tensor([W / 2, H / 2]) + uniform(-config.shift, config.shift, 2) * torch.tensor([W, H])  # [B, 2]
    low, high, boxed = keypoint_box(uv, in_view, (W, H))  # [B, 2] the visible keypoints' box
    draw = uniform(0, 1)
    crop = (draw < config.crop_share) & boxed & (config.net.crop_fill > 0)  # [B]
    part = (draw >= 1 - config.part_share) & boxed & ~crop  # [B]
    framed = crop | part  # [B] views placed on the keypoints' box
    if framed.any():
        fill = torch.where(part, config.part_fill, config.net.crop_fill)
        box_view_zoom = box_zoom(low, high, fill * torch.exp(uniform(-1, 1) * math.log(CROP_FILL_SPREAD)), w, h, (W, H))
        offset = torch.where(part[:, None], uniform(-0.35, 0.35, 2), uniform(-0.05, 0.05, 2))  # of the box's size
        box_view_centre = (low + high) / 2 + offset * (high - low)
        zoom, centre = torch.where(framed, box_view_zoom, zoom), torch.where(framed[:, None], box_view_centre, centre)
    angle = uniform(-1, 1) * math.radians(config.rotation_deg)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [B, 2, 2]
    x = sample_view(images.float() / 255.0, centre, zoom, w, h, rotation)  # input p shows centre + R (p - c) / zoom
    keypoints = torch.tensor([w / 2, h / 2]) + ((uv - centre[:, None]) @ rotation) * zoom[:, None, None]  # R^T (u - centre) zoom + c
    inside = (keypoints >= 0).all(-1) & (keypoints[..., 0] < w) & (keypoints[..., 1] < h)
    return x, keypoints, in_view & inside


def jitter_colours(images: Tensor, generator: torch.Generator) -> Tensor:
    """Saturation, colour balance, contrast, brightness, blur and noise, per image: [B, h, w, 3] in [0, 1]."""
    x = images.permute(0, 3, 1, 2)
    B = len(x)

    def uniform(low: float, high: float, channels: int = 1) -> Tensor:  # [B, channels, 1, 1]
        return low + (high - low) * torch.rand(B, channels, 1, 1, generator=generator)

    grey = x.mean(1, keepdim=True)
    x = grey + uniform(0.4, 1.5) * (x - grey)  # saturation
    x = x * uniform(0.8, 1.2, 3)  # colour balance
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + uniform(0.6, 1.4) * (x - mean) + uniform(-0.2, 0.2)  # contrast, brightness
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(torch.rand(B, 1, 1, 1, generator=generator) < 0.3, blurred, x)
    x = x + uniform(0.0, 0.04) * torch.randn(x.shape, generator=generator)
    return x.clamp(0.0, 1.0).permute(0, 2, 3, 1)


def heatmap_loss(logits: Tensor, cells: Tensor, visible: Tensor, sigma: float) -> Tensor:
    """Mean cross-entropy of the spatial softmax of logits [B, K, h, w] against Gaussians of `sigma` cells at
    cells [B, K, 2] (positions in heatmap cells, centres at +0.5), over the visible [B, K] keypoints."""
    B, K, h, w = logits.shape
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    d2 = (xs - cells[..., 0, None, None]).square() + (ys - cells[..., 1, None, None]).square()  # [B, K, h, w]
    target = torch.softmax((-d2 / (2 * sigma**2)).reshape(B, K, -1), -1)
    log_prob = torch.log_softmax(logits.reshape(B, K, -1), -1)
    per_point = -(target * log_prob).sum(-1)  # [B, K]
    weight = visible.float()
    return (per_point * weight).sum() / weight.sum().clamp_min(1.0)


@torch.no_grad()
def validate(detector: KeypointDetector, images: np.ndarray, uv: np.ndarray, in_view: np.ndarray,
             batch: int = 64) -> dict:  # fmt: skip
    """Detection errors on held-out views (images [N, H, W, 3], uv [N, K, 2], in_view [N, K]), in pixels of the
    views and in % of their width (and the first look's alone where the detector looks twice); also each
    keypoint's median error (`per_keypoint_median_px` [K], None for a keypoint never in view), which says where
    the detector is imprecise."""
    looks = {"": True, "first_look_": False} if detector.config.crop_fill > 0 else {"": False}
    report: dict = {"width_px": images.shape[2]}
    for prefix, crop in looks.items():
        distances = []
        for i in range(0, len(images), batch):
            found, _ = detector.detect(torch.from_numpy(images[i : i + batch]), crop=crop)
            distances.append((found - torch.from_numpy(uv[i : i + batch]).float()).norm(dim=-1))  # [b, K]
        distance = torch.cat(distances).numpy()  # [N, K]
        error = distance[in_view]
        report |= {f"{prefix}median_px": float(np.median(error)), f"{prefix}p90_px": float(np.percentile(error, 90)),
                   f"{prefix}within_2pct_width": float((error < 0.02 * images.shape[2]).mean())}  # fmt: skip
        if not prefix:
            report["per_keypoint_median_px"] = [float(np.median(distance[in_view[:, k], k])) if in_view[:, k].any()
                                                else None for k in range(distance.shape[1])]  # fmt: skip
    return report | {"keypoints": int(error.size)}


def _learning_rate(step: int, config: KeypointTrainConfig) -> float:
    warm = min(1.0, (step + 1) / 100)
    progress = step / max(1, config.steps)
    return config.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _save_state(out: Path, net: KeypointNet, optimizer: torch.optim.Optimizer, step: int, history: list[float]) -> None:
    tensors = {f"net.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(value).detach().contiguous()
    with atomic_path(out / STATE_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step), "history": json.dumps(history)})


def _resume(out: Path, net: KeypointNet, optimizer: torch.optim.Optimizer, config: KeypointTrainConfig) -> tuple[int, list[float]]:
    """The step and loss history to continue from (0, [] without a saved state)."""
    path = out / STATE_FILE
    if not path.is_file():
        return 0, []
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    return min(int(meta["step"]), config.steps), json.loads(meta["history"])


def _jsonable(config: KeypointTrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))
