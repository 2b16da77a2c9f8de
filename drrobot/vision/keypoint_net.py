"""A small 2D keypoint detector for one robot: image -> one heatmap per keypoint (DREAM-style, trained by drrobot).

    detector = KeypointDetector.load("outputs/panda-model/keypoint-detector")
    uv, confidence = detector.detect(image)   # image [H, W, 3] uint8 -> uv [K, 2] pixels, confidence [K] in [0, 1]

The network is an encoder-decoder of plain convolutions (no pretrained weights, so nothing to download): the
image is letterboxed to `input_size`, the heatmaps come out at a quarter of it, one spatial softmax per keypoint.
A keypoint's position is the softmax-weighted mean over the 3x3 cells around its peak (sub-cell accuracy) and its
confidence the probability mass there. A robot seen whole covers a small part of most frames (a Panda 1-2 m away:
a quarter to a half of a 640x480 frame's height, ~45 pixels of a 160x120 input), so a detector trained with crops
(`NetConfig.crop_fill` > 0) looks twice: once at the whole image, then at crops around the first detections
in which their box fills `crop_fill` of the input (and a seventh less and more: the median of the three), at up to
several times the resolution. The keypoints are link-local 3D points of the robot (`drrobot.fit.keypoint_points`),
so the detections feed the fitting core's keypoint objective directly.

Saved as a folder: `detector.safetensors` (weights) and `detector.json` (architecture, input size, keypoints);
nothing is pickled. Train one with `drrobot keypoints` (`drrobot.vision.keypoint_train`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from drrobot.errors import DrRobotError
from drrobot.io import atomic_path, write_json_atomic

WEIGHTS_FILE = "detector.safetensors"
META_FILE = "detector.json"
FORMAT = "drrobot-keypoint-detector/1"
DETECTOR_DIR = "keypoint-detector"  # next to a model's checkpoint folder, where `drrobot pose` looks
STRIDE = 4  # heatmap cells per input pixel: the heatmaps are input_size / STRIDE
CROP_CONFIDENCE = 0.1  # first-look detections that place the second look's crop
MAX_CROP_ZOOM = 6.0  # the second look magnifies at most this much over the whole image's letterbox
SECOND_LOOK_FILLS = (6 / 7, 1.0, 8 / 7)  # the second look's crops fill `crop_fill` times each of these (0.6, 0.7
#   and 0.8 by default, inside the training's spread); each keypoint's position is their median (look-alikes, 30
#   frames each: median error 4.6-5.3 px of 640 instead of 5.1-5.9 with one crop, 90th percentile 5-7% lower)


class DetectorError(DrRobotError):
    """A detector folder that cannot be read or does not fit the robot (the message names the file)."""


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
    """The detector's keypoints: link-local 3D points of one robot."""

    robot: str
    link_names: tuple[str, ...]  # [K] the link each point is fixed on
    local_points: tuple[tuple[float, float, float], ...]  # [K] metres in the link frame

    @property
    def count(self) -> int:
        return len(self.link_names)


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Width of the encoder-decoder (channels per level, finest first) and the input size."""

    channels: tuple[int, ...] = (16, 32, 64, 96)
    input_width: int = 160
    input_height: int = 120
    crop_fill: float = 0.7
    """Share of the input the first detections' box fills in the second look (0: one look at the whole image).
    Training shows crops of about this fill (`KeypointTrainConfig.crop_share`)."""


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))  # fmt: skip


class KeypointNet(nn.Module):
    """image [B, 3, H, W] (normalised) -> heatmap logits [B, K, H / 4, W / 4]."""

    def __init__(self, keypoints: int, config: NetConfig = NetConfig()):
        super().__init__()
        c1, c2, c3, c4 = config.channels
        self.stem = _conv(3, c1, stride=2)  # 1/2
        self.level2 = nn.Sequential(_conv(c1, c2, stride=2), _conv(c2, c2))  # 1/4
        self.level3 = nn.Sequential(_conv(c2, c3, stride=2), _conv(c3, c3))  # 1/8
        self.level4 = nn.Sequential(_conv(c3, c4, stride=2), _conv(c4, c4), _conv(c4, c4, dilation=2))  # 1/16
        self.up3 = _conv(c4 + c3, c3)
        self.up2 = nn.Sequential(_conv(c3 + c2, c2), _conv(c2, c2))
        self.head = nn.Conv2d(c2, keypoints, 1)

    def forward(self, x: Tensor) -> Tensor:
        x2 = self.level2(self.stem(x))  # [B, c2, H/4, W/4]
        x3 = self.level3(x2)  # [B, c3, H/8, W/8]
        x4 = self.level4(x3)  # [B, c4, H/16, W/16]
        y3 = self.up3(torch.cat([F.interpolate(x4, size=x3.shape[-2:], mode="bilinear", align_corners=False), x3], 1))
        y2 = self.up2(torch.cat([F.interpolate(y3, size=x2.shape[-2:], mode="bilinear", align_corners=False), x2], 1))
        return self.head(y2)


def normalize_images(images: Tensor) -> Tensor:
    """[B, H, W, 3] in [0, 1] -> [B, 3, H, W] zero-centred (what the network sees)."""
    return (images.permute(0, 3, 1, 2) - 0.5) / 0.25


def decode_heatmaps(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Heatmap logits [B, K, h, w] -> positions [B, K, 2] in heatmap cells (centres at +0.5) and confidences [B, K]:
    the softmax-weighted mean over the 3x3 cells around each peak, and the probability mass there."""
    B, K, h, w = logits.shape
    prob = logits.reshape(B, K, h * w).softmax(-1)
    peak = prob.argmax(-1)  # [B, K]
    padded = F.pad(prob.reshape(B, K, h, w), (1, 1, 1, 1)).reshape(B, K, -1)  # zeros around: no clamping at borders
    offsets = torch.arange(-1, 2, device=logits.device)
    ys = (peak // w)[..., None, None] + offsets[:, None]  # [B, K, 3, 1] cell rows
    xs = (peak % w)[..., None, None] + offsets[None, :]  # [B, K, 1, 3]
    mass = padded.gather(-1, ((ys + 1) * (w + 2) + xs + 1).reshape(B, K, 9))  # [B, K, 9]
    centres = torch.stack([(xs + 0.5).expand(-1, -1, 3, 3), (ys + 0.5).expand(-1, -1, 3, 3)], -1).reshape(B, K, 9, 2)
    total = mass.sum(-1)  # [B, K]
    uv = (mass[..., None] * centres.float()).sum(-2) / total.clamp_min(1e-12)[..., None]
    return uv, total.clamp(0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class InputMap:
    """Where images sit in the network input: image pixel u -> input pixel u * scale + pad, per image and axis."""

    scale: Tensor  # [B, 1, 2]
    pad: Tensor  # [B, 1, 2]

    def to_input(self, uv: Tensor) -> Tensor:
        """Image pixels [B, K, 2] -> input pixels."""
        return uv * self.scale + self.pad

    def to_image(self, uv: Tensor) -> Tensor:
        """Input pixels [B, K, 2] -> image pixels."""
        return (uv - self.pad) / self.scale


def sample_view(images: Tensor, centre: Tensor, zoom: Tensor, width: int, height: int,
                rotation: Tensor | None = None) -> Tensor:  # fmt: skip
    """Bilinear view of images [B, H, W, 3] in [0, 1]: input pixel p shows image pixel centre + R (p - c) / zoom,
    c the input's centre (centre [B, 2] image pixels, zoom [B] or [B, 2] input pixels per image pixel, rotation
    [B, 2, 2] or None). Grey (0.5) outside the image. -> [B, height, width, 3]."""
    B, H, W, _ = images.shape
    zoom = zoom[:, None] if zoom.ndim == 1 else zoom  # [B, 1 or 2]
    ys, xs = torch.meshgrid(torch.arange(height, device=images.device) + 0.5,
                            torch.arange(width, device=images.device) + 0.5, indexing="ij")  # fmt: skip
    grid = torch.stack([xs, ys], -1).reshape(1, -1, 2) - xs.new_tensor([width / 2, height / 2])  # [1, h w, 2]
    if rotation is not None:
        grid = grid @ rotation.transpose(1, 2)  # [B, h w, 2]
    source = centre[:, None] + grid / zoom[:, None]  # [B, h w, 2]
    normalized = (source / source.new_tensor([W, H]) * 2 - 1).reshape(B, height, width, 2)
    x = images.permute(0, 3, 1, 2) - 0.5
    x = F.grid_sample(x, normalized, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
    return x.permute(0, 2, 3, 1)


def letterbox_images(images: Tensor, input_width: int, input_height: int) -> tuple[Tensor, InputMap]:
    """[B, H, W, 3] float -> [B, input_height, input_width, 3] (resized keeping the aspect ratio, centred, grey
    padding) and where the images went."""
    B, H, W, _ = images.shape
    scale = min(input_width / W, input_height / H)
    w, h = max(1, round(W * scale)), max(1, round(H * scale))
    mode = "area" if w <= W else "bilinear"
    resized = F.interpolate(images.permute(0, 3, 1, 2), size=(h, w), mode=mode,
                            **({} if mode == "area" else {"align_corners": False}))  # fmt: skip
    out = torch.full((B, 3, input_height, input_width), 0.5, device=images.device)
    x0, y0 = (input_width - w) // 2, (input_height - h) // 2
    out[:, :, y0 : y0 + h, x0 : x0 + w] = resized
    placed = InputMap(images.new_tensor([w / W, h / H]).expand(B, 1, 2), images.new_tensor([x0, y0]).expand(B, 1, 2))
    return out.permute(0, 2, 3, 1), placed


def keypoint_box(uv: Tensor, visible: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Corners low, high [B, 2] of the box of the visible [B, K] points uv [B, K, 2] (image pixels), and whether
    [B] two or more are visible; elsewhere the whole W x H image's box."""
    boxed = visible.sum(1) >= 2  # [B]
    low = torch.where(visible[..., None], uv, torch.inf).amin(1)
    high = torch.where(visible[..., None], uv, -torch.inf).amax(1)
    low = torch.where(boxed[:, None], low, 0.0)
    return low, torch.where(boxed[:, None], high, uv.new_tensor(image_size)), boxed


def box_zoom(low: Tensor, high: Tensor, fill: Tensor | float, width: int, height: int,
             image_size: tuple[int, int]) -> Tensor:  # fmt: skip
    """Input pixels per image pixel [B] at which boxes [B, 2] (corners, image pixels) fill `fill` of a width x
    height input along their tighter axis, between the whole W x H image's letterbox zoom and `MAX_CROP_ZOOM`
    times it."""
    whole = min(width / image_size[0], height / image_size[1])
    size = (high - low).clamp_min(1.0)
    return (fill * torch.minimum(width / size[:, 0], height / size[:, 1])).clamp(whole, MAX_CROP_ZOOM * whole)


def crop_images(images: Tensor, uv: Tensor, confident: Tensor, fill: float, width: int,
                height: int) -> tuple[Tensor, InputMap]:  # fmt: skip
    """Views of images [B, H, W, 3] in [0, 1] centred on the box of the confident [B, K] detections uv [B, K, 2],
    which fills `fill` of the input (`box_zoom`; the whole image where fewer than two are confident) ->
    [B, height, width, 3] and the map. Shrunk views are first area-averaged (no aliasing)."""
    B, H, W, _ = images.shape
    low, high, _ = keypoint_box(uv, confident, (W, H))
    zooms, centres = box_zoom(low, high, fill, width, height, (W, H)), (low + high) / 2  # [B], [B, 2]
    crops = []
    for image, zoom, centre in zip(images[:, None], zooms.tolist(), centres):
        small = image
        if zoom < 1.0:  # average the pixels one input pixel covers
            size = (max(1, round(H * zoom)), max(1, round(W * zoom)))
            small = F.interpolate(image.permute(0, 3, 1, 2), size=size, mode="area").permute(0, 2, 3, 1)
        shrink = images.new_tensor([small.shape[2] / W, small.shape[1] / H])  # [2] small pixels per image pixel
        crops.append(sample_view(small, (centre * shrink)[None], (zoom / shrink)[None], width, height))
    scale = zooms[:, None, None].expand(B, 1, 2)  # [B, 1, 2]
    return torch.cat(crops), InputMap(scale, images.new_tensor([width / 2, height / 2]) - centres[:, None] * scale)


class KeypointDetector:
    """A trained network with its keypoints and input size."""

    def __init__(self, net: KeypointNet, spec: KeypointSpec, config: NetConfig):
        self.net, self.spec, self.config = net.eval(), spec, config

    @torch.no_grad()
    def detect(self, images: np.ndarray | Tensor, crop: bool = True) -> tuple[Tensor, Tensor]:
        """images [H, W, 3] or [B, H, W, 3] (uint8, or float in [0, 1]) -> uv [(B,) K, 2] image pixels (centres at
        +0.5) and confidence [(B,) K] in [0, 1]; `crop`: the second look where the detector was trained for it."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
        single = x.ndim == 3
        x = x[None] if single else x
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        device = next(self.net.parameters()).device
        x, w, h = x.to(device), self.config.input_width, self.config.input_height
        uv, confidence = self._look(*letterbox_images(x, w, h))
        if crop and self.config.crop_fill > 0:
            confident = confidence >= CROP_CONFIDENCE
            fills = [self.config.crop_fill * f for f in SECOND_LOOK_FILLS]
            looks = [self._look(*crop_images(x, uv, confident, fill, w, h)) for fill in fills]
            uv = torch.stack([u for u, _ in looks]).median(dim=0).values  # [B, K, 2] per coordinate
            confidence = torch.stack([c for _, c in looks]).mean(dim=0)
        return (uv[0], confidence[0]) if single else (uv, confidence)

    def _look(self, views: Tensor, placed: InputMap) -> tuple[Tensor, Tensor]:
        """Network views [B, h, w, 3] -> detections [B, K, 2] in image pixels and confidences [B, K]."""
        uv, confidence = decode_heatmaps(self.net(normalize_images(views)))
        return placed.to_image(uv * STRIDE), confidence

    def save(self, directory: str | Path) -> Path:
        """Write the folder (weights and JSON, each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
        meta = {"format": FORMAT, "net": dataclasses.asdict(self.config), "keypoints": dataclasses.asdict(self.spec)}
        write_json_atomic(directory / META_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str = "cpu") -> "KeypointDetector":
        """Read a detector folder; DetectorError naming the file when it is missing or unreadable."""
        directory = Path(directory)
        meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise DetectorError(f"no keypoint detector in {directory}: expected {META_FILE} and {WEIGHTS_FILE} "
                                "(train one with `drrobot keypoints --checkpoint <model>/checkpoint`)")  # fmt: skip
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            net_meta = {"crop_fill": 0.0, **meta["net"]}  # detectors from before crops look once
            config = NetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in net_meta.items()})
            kp = meta["keypoints"]
            spec = KeypointSpec(kp["robot"], tuple(kp["link_names"]), tuple(tuple(map(float, p)) for p in kp["local_points"]))
            net = KeypointNet(spec.count, config)
            net.load_state_dict(load_file(str(weights_path)))
        except (OSError, ValueError, KeyError, TypeError, SafetensorError, RuntimeError) as err:
            raise DetectorError(f"cannot read the keypoint detector in {directory}: {err}") from err
        return cls(net.to(device), spec, config)
