"""Protects how the trainer picks its best epoch (`trainer.train.is_better`): higher is better for a caption
metric and lower for val_loss, and a tie on the best-checkpoint metric (seen: object accuracy 0 in both epochs
of a 2-process run, which kept epoch 1 though epoch 2 had the lower validation loss) goes to the lower
validation loss, never to the earlier epoch by default."""
import pytest

from trainer.train import is_better


def test_first_epoch_is_always_the_best_so_far():
    assert is_better("cider", 0.0, None) and is_better("val_loss", 9.0, None)


@pytest.mark.parametrize(("metric", "value", "best", "expected"), [
    ("cider", 1.2, 1.0, True), ("cider", 0.8, 1.0, False),
    ("val_loss", 2.0, 2.5, True), ("val_loss", 2.6, 2.5, False), ("val_loss", 2.5, 2.5, False),
])
def test_direction_of_each_metric(metric, value, best, expected):
    assert is_better(metric, value, best, val_loss=1.0, best_val_loss=2.0) is expected


def test_a_tie_goes_to_the_lower_validation_loss():
    # the run of the issue: object accuracy 0 in epochs 1 and 2, val_loss 3.1 then 2.4
    assert is_better("object_accuracy", 0.0, 0.0, val_loss=2.4, best_val_loss=3.1)
    assert not is_better("object_accuracy", 0.0, 0.0, val_loss=3.3, best_val_loss=3.1)
    assert not is_better("object_accuracy", 0.0, 0.0, val_loss=3.1, best_val_loss=3.1)  # a full tie keeps the first
    assert is_better("cider", 0.1 + 0.2, 0.3, val_loss=1.0, best_val_loss=1.5)  # equal up to float rounding
    assert not is_better("cider", 0.5, 0.5)  # no losses to compare: the earlier epoch stays
