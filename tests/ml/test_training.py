"""Training and evaluation (tiny models: this checks the plumbing, not the accuracy)."""

import pytest

from ml.datasets import holdout_split
from ml.errors import DatasetError
from ml.labels import LABEL_SPACES
from ml.training import evaluate, train
from tests.ml.conftest import TINY_SIZE


def test_training_reports_held_out_metrics_for_every_head(tiny_training, tiny_samples):
    metrics = tiny_training.metrics

    assert set(metrics["accuracy"]) == {"garment", "condition"}
    assert all(0 <= value <= 1 for value in metrics["accuracy"].values())
    assert 0 <= metrics["exact_match"] <= min(metrics["accuracy"].values())
    assert metrics["train_size"] + metrics["eval_size"] == len(tiny_samples)
    assert metrics["eval_size"] == 15  # one of the two pictures of every kind
    assert metrics["epochs"] == 1
    assert metrics["training_seconds"] > 0
    assert metrics["image_size"] == TINY_SIZE
    assert set(metrics["recall"]["garment"]) == set(LABEL_SPACES["garment"])
    assert {"data_source", "seed", "label_spaces", "history", "eval_loss"} <= set(metrics)
    assert set(tiny_training.state_dict) >= {"heads.garment.weight", "heads.condition.weight"}


def test_evaluate_reproduces_the_held_out_metrics_of_training(tiny_training, tiny_samples):
    _, held_out = holdout_split(tiny_samples)

    metrics = evaluate(tiny_training.state_dict, held_out, label_spaces=LABEL_SPACES, image_size=TINY_SIZE)

    assert metrics["eval_size"] == len(held_out)
    assert metrics["accuracy"] == tiny_training.metrics["accuracy"]
    assert metrics["exact_match"] == tiny_training.metrics["exact_match"]


def test_progress_gets_a_line_per_epoch_with_loss_and_held_out_accuracy(tiny_samples):
    lines = []

    train(samples=tiny_samples, epochs=2, image_size=TINY_SIZE, seed=1, progress=lines.append)

    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2
    assert "loss" in epochs[0] and "held-out garment" in epochs[0] and "exact match" in epochs[0]


def test_explicit_evaluation_samples_are_held_out_and_all_others_train(tiny_samples):
    result = train(samples=tiny_samples[:20], eval_samples=tiny_samples[20:], epochs=1, image_size=TINY_SIZE)

    assert (result.metrics["train_size"], result.metrics["eval_size"]) == (20, len(tiny_samples) - 20)


def test_fine_tuning_starts_from_the_given_weights_and_restarts_a_changed_head(tiny_training, tiny_samples):
    grown = {"garment": (*LABEL_SPACES["garment"], "scarf"), "condition": LABEL_SPACES["condition"]}
    lines = []

    result = train(
        samples=tiny_samples, label_spaces=grown, epochs=1, image_size=TINY_SIZE,
        init_state_dict=tiny_training.state_dict, progress=lines.append,
    )

    assert result.metrics["fine_tuned"] is True
    assert result.state_dict["heads.garment.weight"].shape[0] == 6
    assert any("new head(s): garment" in line for line in lines)


def test_too_few_pictures_to_hold_any_out_are_refused(tiny_samples):
    one_of_each = tiny_samples[::2]

    with pytest.raises(DatasetError, match="Too few images to hold out"):
        train(samples=one_of_each, epochs=1, image_size=TINY_SIZE)


def test_a_label_outside_the_label_spaces_is_refused(tiny_samples):
    image, _ = tiny_samples[0]
    samples = [*tiny_samples, (image, {"garment": "scarf", "condition": "clean"})]

    with pytest.raises(DatasetError, match="Unknown garment label 'scarf'"):
        train(samples=samples, eval_samples=tiny_samples, epochs=1, image_size=TINY_SIZE)
