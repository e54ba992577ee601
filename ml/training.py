"""Training and evaluation of the multi-head classifier on the CPU.

`train` holds out a stratified part of the samples (`ml.datasets.holdout_split`, with a
fixed split seed) that never takes part in training, trains with AdamW and a one-cycle
learning rate on the sum of the heads' cross-entropy losses, and reports the held-out
accuracy of every head and the exact-match accuracy (every head right at once) after each
epoch. `evaluate` computes the same metrics for any state dict on any samples, so a
retrained candidate and the active model can be compared on the same held-out photos.

All pictures are decoded and resized once, up front, and kept as uint8 tensors; the
augmentation (flips, small shifts, brightness and contrast) works on whole batches of
tensors, which keeps the two CPU cores busy with the network rather than with Pillow.
The network trains in channels-last memory format (about 25% faster on this CPU).

Training from scratch is data-hungry: with ~40 pictures per kind the network memorises
them (train accuracy near 100%, held-out near chance), so the defaults draw more
pictures (150 per kind) and pass over them fewer times (8 epochs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ml import defaults
from ml.datasets import SPLIT_SEED, Sample, holdout_split
from ml.errors import DatasetError
from ml.labels import LABEL_SPACES, LabelSpaces, label_spaces_as_json
from ml.nets import ARCHITECTURE, build_model, configure_threads
from ml.preprocess import DEFAULT_IMAGE_SIZE, normalize, to_uint8_batch

DEFAULT_EPOCHS = defaults.EPOCHS
DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE
DEFAULT_LEARNING_RATE = defaults.LEARNING_RATE
LABEL_SMOOTHING = 0.0

Progress = Callable[[str], None]


@dataclass
class TrainingResult:
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any]


def train(
    *,
    samples: Sequence[Sample],
    label_spaces: LabelSpaces = LABEL_SPACES,
    epochs: int = DEFAULT_EPOCHS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    init_state_dict: Mapping[str, torch.Tensor] | None = None,
    progress: Progress | None = None,
    eval_samples: Sequence[Sample] | None = None,
    eval_fraction: float = defaults.EVAL_FRACTION,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    data_source: str = "",
) -> TrainingResult:
    """Train a model on `samples`; its metrics are measured on photos it never trained on.

    The held-out photos are `eval_samples` when given (then every sample trains), else a
    stratified `eval_fraction` of `samples`. `init_state_dict` starts from an earlier
    model (fine-tuning); a head whose label space changed starts afresh. `progress` gets
    one line per epoch. Raises DatasetError when there is nothing to train or hold out.
    """
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    started = time.perf_counter()
    threads = configure_threads()
    torch.manual_seed(seed)
    say = progress or (lambda line: None)

    if eval_samples is None:
        train_samples, eval_samples = holdout_split(samples, eval_fraction=eval_fraction)
    else:
        train_samples = list(samples)
    if len(train_samples) < 2:
        raise DatasetError(f"{len(train_samples)} training image(s) are too few; at least 2 are needed.")
    if not eval_samples:
        raise DatasetError(
            "Too few images to hold out an evaluation set: give at least two images of some garment and condition."
        )
    train_x, train_y = _encode(train_samples, label_spaces, image_size)
    eval_x, eval_y = _encode(eval_samples, label_spaces, image_size)
    say(f"training on {len(train_samples)} images, holding out {len(eval_samples)} ({threads} CPU thread(s))")

    model = build_model(label_spaces).to(memory_format=torch.channels_last)
    if init_state_dict is not None:
        restarted = load_compatible(model, init_state_dict)
        if restarted:
            say(f"starting from the given weights; new head(s): {', '.join(restarted)}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train_samples) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    shuffler = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_samples), generator=shuffler)
        total_loss, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            if len(index) < 2:  # batch norm cannot train on a single picture
                continue
            batch = normalize(_augment(train_x[index], shuffler)).contiguous(memory_format=torch.channels_last)
            logits = model(batch)
            loss = sum(
                F.cross_entropy(logits[head], train_y[head][index], label_smoothing=LABEL_SMOOTHING)
                for head in label_spaces
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(index)
            seen += len(index)
        held_out = _measure(model, eval_x, eval_y, label_spaces)
        train_loss = total_loss / max(seen, 1)
        history.append({"epoch": epoch, "train_loss": round(train_loss, 4), "exact_match": held_out["exact_match"]})
        accuracies = ", ".join(f"{head} {value:.1%}" for head, value in held_out["accuracy"].items())
        say(
            f"epoch {epoch}/{epochs}: loss {train_loss:.3f}, held-out {accuracies}, "
            f"exact match {held_out['exact_match']:.1%} ({time.perf_counter() - epoch_started:.1f} s)"
        )

    metrics = {
        **held_out,
        "train_size": len(train_samples),
        "epochs": epochs,
        "training_seconds": round(time.perf_counter() - started, 1),
        "data_source": data_source,
        "image_size": image_size,
        "seed": seed,
        "split_seed": SPLIT_SEED,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "fine_tuned": init_state_dict is not None,
        "architecture": ARCHITECTURE,
        "label_spaces": label_spaces_as_json(label_spaces),
        "history": history,
    }
    state_dict = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return TrainingResult(state_dict=state_dict, metrics=metrics)


def evaluate(
    state_dict: Mapping[str, torch.Tensor],
    samples: Sequence[Sample],
    *,
    label_spaces: LabelSpaces = LABEL_SPACES,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> dict[str, Any]:
    """The held-out metrics of a trained model on `samples` (which it must not have trained on).

    Returns {"accuracy": {head: fraction}, "exact_match": fraction, "eval_loss": mean summed
    cross-entropy, "eval_size": n, "recall": {head: {label: fraction or None}}}. Pass the
    label spaces and image size the model was trained with (ModelVersion stores them).
    """
    if not samples:
        raise DatasetError("No samples to evaluate on.")
    configure_threads()
    model = build_model(label_spaces).to(memory_format=torch.channels_last)  # as in training: same numbers
    model.load_state_dict(state_dict)
    x, y = _encode(samples, label_spaces, image_size)
    return _measure(model, x, y, label_spaces)


def load_compatible(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Load the tensors of `state_dict` that fit `model`; return the heads that did not fit.

    The backbone must fit (same architecture); a head whose label space grew or shrank
    keeps its fresh initialisation.
    """
    own = model.state_dict()
    fitting = {name: tensor for name, tensor in state_dict.items() if name in own and own[name].shape == tensor.shape}
    missing = [name for name in own if name not in fitting]
    backbone_missing = [name for name in missing if not name.startswith("heads.")]
    if backbone_missing:
        raise ValueError(f"the weights do not fit the backbone (e.g. {backbone_missing[0]})")
    model.load_state_dict(fitting, strict=False)
    return sorted({name.split(".")[1] for name in missing})


def _encode(
    samples: Sequence[Sample], label_spaces: LabelSpaces, image_size: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pictures as one uint8 tensor, labels as one index tensor per head."""
    indices: dict[str, list[int]] = {head: [] for head in label_spaces}
    for _, labels in samples:
        for head, known in label_spaces.items():
            label = labels.get(head)
            if label not in known:
                raise DatasetError(f"Unknown {head} label {label!r}; the known ones are: {', '.join(known)}.")
            indices[head].append(list(known).index(label))
    images = to_uint8_batch([image for image, _ in samples], image_size)
    return images, {head: torch.tensor(values, dtype=torch.long) for head, values in indices.items()}


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation of a uint8 batch: mirror, shift by up to 8%, brightness and contrast."""
    n, _, height, width = batch.shape
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(-1), batch)
    pad = max(1, height // 12)
    padded = F.pad(batch.float(), (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    shifted = torch.stack([padded[i, :, dy:dy + height, dx:dx + width] for i, (dy, dx) in enumerate(offsets)])
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.3
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 40
    mean = shifted.mean(dim=(1, 2, 3), keepdim=True)
    return ((shifted - mean) * contrast + mean + brightness).clamp_(0, 255)


@torch.inference_mode()
def _measure(
    model: nn.Module, images: torch.Tensor, targets: dict[str, torch.Tensor], label_spaces: LabelSpaces,
    batch_size: int = 128,
) -> dict[str, Any]:
    model.eval()
    predicted: dict[str, list[torch.Tensor]] = {head: [] for head in label_spaces}
    loss_sum = 0.0
    for start in range(0, len(images), batch_size):
        logits = model(normalize(images[start:start + batch_size]))
        for head in label_spaces:
            target = targets[head][start:start + batch_size]
            loss_sum += float(F.cross_entropy(logits[head], target, reduction="sum"))
            predicted[head].append(logits[head].argmax(dim=1))
    correct = {head: torch.cat(predicted[head]) == targets[head] for head in label_spaces}
    every_head = torch.stack(list(correct.values())).all(dim=0)
    recall: dict[str, dict[str, float | None]] = {}
    for head, labels in label_spaces.items():
        recall[head] = {}
        for index, label in enumerate(labels):
            of_label = targets[head] == index
            count = int(of_label.sum())
            recall[head][label] = round(float(correct[head][of_label].float().mean()), 4) if count else None
    return {
        "accuracy": {head: round(float(hits.float().mean()), 4) for head, hits in correct.items()},
        "exact_match": round(float(every_head.float().mean()), 4),
        "eval_loss": round(loss_sum / len(images), 4),
        "eval_size": len(images),
        "recall": recall,
    }
