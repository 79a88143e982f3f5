"""`python -m captioning add`: a save_pretrained folder becomes an entry only after it captioned a test image,
with a model card and the sidecar; remote code, non-captioners, a taken name and an offline hub id are refused
in one line, leaving nothing behind in the zoo."""

from __future__ import annotations

import json
import shutil

import pytest

from captioning.commands.cli import main
from captioning.zoo import SIDECAR_FILE, list_zoo, load_entry
from foreign_models import build_florence2, build_git


@pytest.fixture(scope="module")
def florence(tmp_path_factory):
    folder = build_florence2(tmp_path_factory.mktemp("source") / "florence-tiny")
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [image-to-text]\n---\n# Tiny Florence\nThe maker's words.\n")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_add_a_folder_writes_card_and_sidecar_after_a_test_caption(florence, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    code, out, _ = run(capsys, "add", florence, "--zoo", zoo, "--name", "florence", "--display-name", "Florence tiny")
    assert code == 0
    assert out.startswith(f"added {zoo / 'florence'} (Florence-2,") and "its caption of a test image:" in out
    card = (zoo / "florence" / "README.md").read_text()
    assert "| Family | Florence-2 |" in card and "| Licence | mit |" in card and '"<CAPTION>"' in card
    assert "The maker's words." in card and "license: mit" not in card
    assert json.loads((zoo / "florence" / SIDECAR_FILE).read_text()) == {"display_name": "Florence tiny"}
    entry = load_entry(zoo / "florence")
    assert entry.display_name == "Florence tiny" and entry.family == "Florence-2"
    (row,) = list_zoo(zoo)
    assert row["family"] == "Florence-2" and "error" not in row
    assert f"{row['parameters']:,} parameters" in out

    # The folder stays loadable by plain transformers.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    AutoModelForImageTextToText.from_pretrained(zoo / "florence")
    AutoProcessor.from_pretrained(zoo / "florence")

    # A taken name is refused, the entry untouched.
    code, _, err = run(capsys, "add", florence, "--zoo", zoo, "--name", "florence")
    assert code == 2 and "already exists" in err and err.count("\n") == 1


def test_prompt_goes_into_the_sidecar(tmp_path, capsys):
    git = build_git(tmp_path / "git")
    chat = tmp_path / "zoo"
    code, _, _ = run(capsys, "add", git, "--zoo", chat, "--prompt", "ignored for pixels-only families")
    assert code == 0
    assert json.loads((chat / "git" / SIDECAR_FILE).read_text())["prompt"] == "ignored for pixels-only families"


def test_refusals_leave_nothing_behind(florence, tmp_path, capsys, monkeypatch):
    zoo = tmp_path / "zoo"
    remote = shutil.copytree(florence, tmp_path / "remote")
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"}
    (remote / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "add", remote, "--zoo", zoo)
    assert code == 2 and "trust_remote_code" in err and "Florence2ForConditionalGeneration" in err

    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path / "gpt2")
    code, _, err = run(capsys, "add", tmp_path / "gpt2", "--zoo", zoo)
    assert code == 2 and "cannot caption images" in err

    code, _, err = run(capsys, "add", tmp_path / "no-such-folder" / "x", "--zoo", zoo)
    assert code == 2 and err.count("\n") == 1

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code, _, err = run(capsys, "add", "Salesforce/blip-image-captioning-base", "--zoo", zoo)
    assert code == 2 and "not in the local Hugging Face cache" in err and "hf download" in err

    assert [p.name for p in zoo.iterdir()] == []  # no entry, no staging folder left
