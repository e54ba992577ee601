"""The network: a MobileNetV3-Small backbone with one classification head per label space.

MobileNetV3-Small is small enough to train from scratch on two CPU cores in about two
minutes and to read a photo in a few milliseconds, and no pretrained weights can be
downloaded here anyway (weights=None). The backbone's features are pooled into one
576-dimensional vector per photo; each label space ("garment", "condition") gets its own
linear head on that shared vector, so one forward pass reads every label.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small

ARCHITECTURE = "mobilenet_v3_small"
BATCH_NORM_MOMENTUM = 0.1


class MultiHeadClassifier(nn.Module):
    """Backbone features + global average pooling + one linear head per label space."""

    def __init__(self, label_spaces: Mapping[str, Sequence[str]]):
        super().__init__()
        if not label_spaces:
            raise ValueError("at least one label space is needed")
        backbone = mobilenet_v3_small(weights=None)
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                # torchvision's 0.01 suits ImageNet-length training; in the few hundred steps
                # of training here the running statistics would not catch up, and the
                # model would predict one class for everything in eval mode
                module.momentum = BATCH_NORM_MOMENTUM
        self.features = backbone.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        width = backbone.classifier[0].in_features
        self.heads = nn.ModuleDict({head: nn.Linear(width, len(labels)) for head, labels in label_spaces.items()})
        # Zero-initialised residual branches make each block start as the identity, so the
        # untrained network is shallow and learns from the first epoch (from scratch it
        # otherwise idles for several epochs).
        for block in self.features:
            if getattr(block, "use_res_connect", False):
                nn.init.zeros_(block.block[-1][1].weight)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = torch.flatten(self.pool(self.features(images)), 1)
        return {head: layer(shared) for head, layer in self.heads.items()}


def build_model(label_spaces: Mapping[str, Sequence[str]], *, architecture: str = ARCHITECTURE) -> nn.Module:
    """A freshly initialised multi-head classifier for these label spaces (dict head -> logits)."""
    if architecture != ARCHITECTURE:
        raise ValueError(f"unknown architecture {architecture!r}; this code builds {ARCHITECTURE!r}")
    return MultiHeadClassifier(label_spaces)


def state_dict_to_bytes(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise a state dict (torch.save) for ModelVersion.artifact."""
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    return buffer.getvalue()


def state_dict_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    """Read a state dict written by state_dict_to_bytes; tensors only (weights_only), on the CPU."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def configure_threads() -> int:
    """Use TORCH_NUM_THREADS intra-op threads when set, else one per CPU; return the number.

    Several AI worker processes share the machine's cores (three on two cores under
    `make run`), so each is started with TORCH_NUM_THREADS=1 instead of oversubscribing.
    """
    threads = int(os.environ.get("TORCH_NUM_THREADS") or os.cpu_count() or 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
