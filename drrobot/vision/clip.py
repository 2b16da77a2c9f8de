"""CLIP (open_clip) as a differentiable image-text score, for text-to-pose (the `clip` extra).

    clip = load_clip(ClipSpec("ViT-B-32", "openai"))              # cached download, a local file, or local-dir:
    text = clip.encode_text(["a robot arm reaching up"])           # [P, D], unit length
    score = clip.encode_images(images) @ text.T                   # images [B, H, W, 3] in [0, 1] -> [B, P]

Weights: an open_clip pretrained tag (downloaded once into the Hugging Face cache, `cache_dir` to choose
where), a local checkpoint file (`pretrained="path/to/open_clip_pytorch_model.bin"` or `.safetensors`), or
`model="local-dir:/path"` (a folder with `open_clip_config.json` and the weights, any architecture).
`pretrained="none"` builds random weights (tests, timing): its scores mean nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drrobot.errors import DrRobotError, UsageError

NO_WEIGHTS = "none"


class ClipWeightsError(DrRobotError):
    """CLIP weights (or open_clip itself) that cannot be loaded; the message says how to provide them."""


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to load (see the module docstring)."""

    model: str = "ViT-B-32"
    """open_clip architecture name (`open_clip.list_models()`), or `local-dir:/path` (config + weights)."""
    pretrained: str = "openai"
    """open_clip pretrained tag, a local checkpoint file, or "none" for random weights (ignored with local-dir:)."""
    cache_dir: Path | None = None
    """Where downloaded weights are cached (default: the Hugging Face cache)."""


class ClipScorer(nn.Module):
    """A frozen CLIP model with its tokenizer and image normalisation; gradients flow to the input images."""

    def __init__(self, model: nn.Module, tokenizer, image_size: tuple[int, int], mean, std):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = image_size  # (H, W) the image encoder takes
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None, None])  # [3, 1, 1]
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None, None])  # [3, 1, 1]

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Tensor:
        """Unit-length text embeddings [P, D]."""
        if not prompts or any(not p.strip() for p in prompts):
            raise UsageError(f"prompts must be non-empty text, got {prompts!r}")
        tokens = self.tokenizer(prompts).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def encode_images(self, images: Tensor) -> Tensor:
        """Unit-length image embeddings [B, D] of images [B, H, W, 3] in [0, 1] (resized to the encoder's size,
        normalised as in training); differentiable w.r.t. the images."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2)  # [B, 3, H, W]
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return F.normalize(self.model.encode_image((x - self.mean) / self.std).float(), dim=-1)


def load_clip(spec: ClipSpec, device: torch.device | str = "cpu") -> ClipScorer:
    """The CLIP of `spec` on `device`; ClipWeightsError saying how to provide the weights when they are missing."""
    open_clip = _import_open_clip()
    local_dir = spec.model.startswith("local-dir:")
    pretrained = None if local_dir or spec.pretrained.lower() == NO_WEIGHTS else spec.pretrained
    if local_dir and not Path(spec.model.removeprefix("local-dir:")).is_dir():
        raise ClipWeightsError(f"--clip.model {spec.model}: no such folder (it needs open_clip_config.json and "
                               "the weights)")  # fmt: skip
    if pretrained is not None and Path(pretrained).suffix and not Path(pretrained).is_file():
        raise ClipWeightsError(f"CLIP weights file {pretrained} not found")
    try:
        model = open_clip.create_model(spec.model, pretrained=pretrained, device=device,
                                       cache_dir=None if spec.cache_dir is None else str(spec.cache_dir))  # fmt: skip
        tokenizer = open_clip.get_tokenizer(spec.model)
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        raise ClipWeightsError(
            f"cannot load CLIP {spec.model!r} with weights {spec.pretrained!r}: {str(err).splitlines()[0][:300]}. "
            "Without internet, give the weights on disk: --clip.pretrained path/to/open_clip_pytorch_model.bin "
            "(or .safetensors) for that architecture, or --clip.model local-dir:/folder holding "
            "open_clip_config.json and the weights; with internet they download once into the Hugging Face cache "
            "(--clip.cache-dir to choose it)."
        ) from err
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"] if isinstance(cfg["size"], (tuple, list)) else (cfg["size"], cfg["size"])
    return ClipScorer(model, tokenizer, (int(size[0]), int(size[1])), cfg["mean"], cfg["std"]).to(device)


def _import_open_clip():
    """open_clip, with torchvision made importable on CPU-only torch (only where that is needed)."""
    from drrobot.compat import import_torchvision

    try:
        import_torchvision()
        import open_clip
    except ImportError as err:
        raise ClipWeightsError(f"open_clip is not installed ({err}): pip install 'drrobot[clip]'") from err
    return open_clip
