"""Another maker's model on the page beside our own: the picker and the Zoo table show its family and size, and it
is captioned, rated (blind too) and ranked in the same set as a caption-zoo entry."""

from __future__ import annotations

import shutil

from foreign_models import build_blip
from helpers import build_tiny_zoo, no_progress, write_images
from page import compare as page_compare
from page import context as page_context
from page import results as page_results
from page import session as page_session
from page import zoo as page_zoo


def test_own_and_foreign_entries_are_compared_rated_and_ranked_together(tmp_path):
    zoo = build_tiny_zoo(tmp_path / "zoo", ["alpha"])
    build_blip(tmp_path / "blip")
    shutil.copytree(tmp_path / "blip", zoo / "blip-base")
    (zoo / "blip-base" / "caption_zoo.json").write_text('{"display_name": "BLIP base (tiny)"}')
    ctx = page_context.make_context(zoo, tmp_path / "ratings.sqlite", image_dir=tmp_path / "display")
    try:
        rows, note = page_zoo.zoo_entries(ctx)
        assert note.startswith("2 usable model(s)")
        choices = dict((value, label) for label, value in page_zoo.model_choices(rows))
        assert choices["blip-base"].startswith("BLIP base (tiny) [blip-base] · BLIP (blip_vision_model → blip_text_model)")
        assert "M params" in choices["blip-base"] and choices["alpha"].startswith("alpha · tiny-clip → tiny-gpt2, K=3")
        table = page_zoo.zoo_table(rows).set_index("model")
        assert table.loc["BLIP base (tiny) [blip-base]", "mapper"] == "BLIP"
        cards = page_zoo.model_cards(ctx, ["blip-base"])
        assert "BLIP (`blip_vision_model` → `blip_text_model`)" in cards and "asked with the image alone" in cards

        files = write_images(tmp_path / "in", 3)
        for blind in (False, True):
            name = "blind-set" if blind else "open-set"
            session, message, _ = page_compare.caption(ctx, page_session.new_session(), "alice", name, blind,
                                                       [str(f) for f in files], [], ["alpha", "blip-base"], "greedy",
                                                       progress=no_progress)
            assert "3 image(s) x 2 model(s)" in message and "6 new caption(s)" in message
            stored = ctx.store.get_captions(name)
            assert {c["model_name"] for c in stored} == {"alpha", "blip-base"}
            assert all(c["decoding"]["strategy"] == "greedy" for c in stored)
            view = page_compare.grid_view(ctx, session)
            assert view.captions == 6
            if blind:
                assert not {c.label for r in view.rows for c in r.cells} & {"alpha", "blip-base"}
            for c in stored:  # the foreign model's captions rated 2, ours 0
                ctx.store.rate(name, "alice", c["image_hash"], c["model_name"], 2 if c["model_name"] == "blip-base" else 0)
        table, _, _ = page_results.results(ctx, {"rater": "alice"}, "open-set")
        ranked = table.set_index("model")
        assert ranked.loc["blip-base", "rank"] == 1 and ranked.loc["alpha", "rank"] == 2
        assert ranked.loc["blip-base", "accuracy %"] == 100.0 and ranked.loc["alpha", "accuracy %"] == 0.0
    finally:
        ctx.store.close()
