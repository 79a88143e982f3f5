"""Protects what the model card tells a person choosing a model: a model scored on the synthetic shapes data
(it carries object accuracy) says plainly that it only knows coloured shapes; other models do not say so; the
committed demo entries' cards carry that warning."""

from pathlib import Path

from captioning.card import model_card
from captioning.zoo import CARD_FILE
from helpers import ROOT, tiny_captioner


def test_a_shapes_model_says_it_only_knows_coloured_shapes():
    config = tiny_captioner().config
    shapes = model_card("m", config, {"bleu4": 0.5, "object_accuracy": 0.9})
    assert "## Limitations" in shapes and "coloured circles, squares and triangles" in shapes
    assert "not to caption real pictures" in shapes
    photos = model_card("m", config, {"bleu4": 0.5, "cider": 1.0})
    assert "## Limitations" not in photos and "coloured" not in photos


def test_the_demo_zoo_cards_warn_about_photos():
    cards = sorted(Path(ROOT / "model_zoo").glob(f"*/{CARD_FILE}"))
    assert len(cards) == 4  # three cross-entropy entries and the SCST child
    for card in cards:
        assert "it describes such shapes and nothing else" in card.read_text(), card
