"""Shared test helpers (not a test file): tiny models built from configs, a tiny zoo, test images, a free
port, and the app served in a thread or run as a subprocess. Nothing here downloads anything; every model
runs in milliseconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPVisionConfig, GPT2Config, ViTConfig

from captioning.config import CaptionerConfig, MapperConfig
from captioning.model import PrefixCaptioner

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"  # screenshots of the browser tests
# A rating database written by Caption Zoo before Alembic (schema 2, commit dafac72): two sets (one blind, one on
# a 1-4 scale), captions, ratings, references, a gold score, a pairwise vote, an image known by name only.
LEGACY_DB = ROOT / "tests" / "rating" / "data" / "ratings_schema2.sqlite"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's Chromium; Playwright cannot download its own browsers here
# Flags for a closed network: without the background-networking ones Chromium keeps dialling out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
CHROMIUM_MISSING = (f"{CHROMIUM} is not installed; run `make browser` (apt-get install chromium) to run the "
                    "browser tests")



def browser_test_marks() -> list:
    """`pytestmark` of a browser test module: slow, and skipped with the reason when Chromium is missing."""
    import pytest

    return [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_MISSING)]
VOCAB = 96
MODELS = ["alpha", "beta", "gamma"]


def tiny_vision_config(encoder_type: str = "clip", image_size: int = 32) -> dict:
    if encoder_type == "clip":
        return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=image_size, patch_size=8, projection_dim=24).to_dict()
    return ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     image_size=image_size, patch_size=8).to_dict()


def tiny_decoder_config(vocab_size: int = VOCAB, initializer_range: float = 0.3) -> dict:
    # A wide init makes the random model's next-token distributions peaked, so decoding paths that are
    # mathematically equal do not flip on float ties.
    return GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                      bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
                      initializer_range=initializer_range).to_dict()


def tiny_captioner(encoder_type: str = "clip", mapper: str = "mlp", prefix_length: int = 3, seed: int = 0,
                   freeze_decoder="none", freeze_encoder: bool = True, vocab_size: int = VOCAB) -> PrefixCaptioner:
    torch.manual_seed(seed)
    config = CaptionerConfig(
        encoder_type=encoder_type,
        encoder_config=tiny_vision_config(encoder_type),
        decoder_config=tiny_decoder_config(vocab_size),
        prefix_length=prefix_length,
        mapper=MapperConfig(type=mapper, num_layers=1, num_heads=4, clip_length=2),
        encoder_name="tiny-" + encoder_type,
        decoder_name="tiny-gpt2",
        freeze_encoder=freeze_encoder,
        freeze_decoder=freeze_decoder,
    )
    return PrefixCaptioner(config).eval()


def load_bench(name: str):
    """bench/<name>.py imported as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def tiny_zoo_entry(root: Path, name: str, tokenizer, *, seed: int = 0, **save_kwargs) -> Path:
    """One tiny random captioner saved as a zoo entry using `tokenizer`."""
    from captioning.preprocessing import make_image_processor
    from captioning.zoo import save_entry

    model = tiny_captioner(vocab_size=len(tokenizer), seed=seed)
    model.decoder.config.eos_token_id = tokenizer.eos_token_id
    return save_entry(model, tokenizer, make_image_processor("clip", 32), root / name, **save_kwargs)


def build_tiny_zoo(root: Path, names: list[str] = MODELS) -> Path:
    """A zoo of tiny random captioners (one tokenizer, different seeds); milliseconds to run."""
    from captioning.tokenization import train_bpe_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    tok = train_bpe_tokenizer(["a red circle", "a blue square", "two green triangles"] * 10, vocab_size=280)
    for i, name in enumerate(names):
        tiny_zoo_entry(root, name, tok, seed=i, training={"data": f"synthetic shapes split {i}"},
                       metrics={"bleu4": 0.1 * (i + 1)})
    return root


def zoo_or_tiny_models(zoo: Path, work: Path, count: int = 3) -> tuple[Path, list[str], str]:
    """(zoo folder, `count` model names, description) for the benchmarks: the first usable entries of `zoo`, or
    tiny random captioners built once in `work`/tiny-zoo when it has fewer."""
    from captioning.zoo import ZooError, list_zoo

    try:
        usable = [r["name"] for r in list_zoo(zoo) if "error" not in r]
    except ZooError:
        usable = []
    if len(usable) >= count:
        return zoo, usable[:count], f"zoo {zoo}"
    tiny_zoo, names = work / "tiny-zoo", [f"tiny-{i}" for i in range(count)]
    if not all((tiny_zoo / name).is_dir() for name in names):
        shutil.rmtree(tiny_zoo, ignore_errors=True)
        build_tiny_zoo(tiny_zoo, names)
    return tiny_zoo, names, f"tiny random captioners ({zoo} has fewer than {count} usable entries)"


def write_images(folder: Path, count: int, *, seed: int = 0, broken: bool = False) -> list[Path]:
    """`count` distinct small PNGs (and a text file named broken.jpg if asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{seed}_{i}.png"
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    if broken:
        (folder / "broken.jpg").write_text("this is not a picture")
        paths.append(folder / "broken.jpg")
    return paths


def fill_set(store, name: str, file_names: list[str], models: tuple[str, ...] | list[str] = tuple(MODELS), *,
             blind: bool = False) -> list[str]:
    """An evaluation set opened by alice with one caption per model for each named image (no picture files);
    returns the image hashes, in the order of `file_names`."""
    from rating import sets

    sets.open_set(store, name, "alice", blind=blind)
    hashes = []
    for i, file_name in enumerate(file_names):
        content_hash = f"{i:064x}"
        store.add_image(content_hash, file_name, 10, 10)
        for model in models:
            store.save_caption(name, content_hash, model, f"{model} says {i}", weights_hash=None, decoding=None)
        hashes.append(content_hash)
    return hashes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_in_thread(zoo: Path, root: Path):
    """The app served in this process, in a thread, exactly as `python app.py` serves it (the page mounted on
    the REST API's FastAPI app, run by uvicorn); yields the Blocks, its `local_url` set to the server's URL."""
    from page.blocks import build_app
    from page.server import build_server

    demo = build_app(zoo, root / "ratings.sqlite", samples_dir=root / "samples", image_dir=root / "display")
    demo.queue(default_concurrency_limit=4)
    try:
        for url in serve_asgi_in_thread(build_server(demo)):
            demo.local_url = url + "/"
            yield demo
    finally:
        demo.ctx.store.close()


def serve_asgi_in_thread(asgi_app, host: str = "127.0.0.1"):
    """An ASGI app (e.g. `server.api.create_app(...)` or `page.server.build_server(...)`) served by uvicorn in a thread on
    a free loopback port, as `python app.py` serves it; yields its base URL."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(asgi_app, host=host, port=free_port(), log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class AppProcess:
    """`python app.py ...` as a subprocess on a free port; waits until it answers, kill() ends it abruptly."""

    def __init__(self, zoo: Path, db: Path | str, image_cache: Path, samples: Path | None = None, *extra: str,
                 log_dir: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, str(ROOT / "app.py"), "--zoo", str(zoo), "--db", str(db), "--port", str(self.port),
                "--image-cache", str(image_cache), *extra]
        if samples is not None:
            args += ["--samples", str(samples)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": str(ROOT)}
        self.log = (log_dir or Path(db).parent) / f"app-{self.port}.log"  # `db` may be a postgresql:// URL
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2)  # open also with --login
                return
            except OSError:
                time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"app did not answer within 120 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as when the machine or the process dies."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def no_progress(*args, **kwargs) -> None:
    """Stands in for gr.Progress when a page handler is called outside a Gradio event."""
    return None


def wait_until(check, what: str, timeout: float = 30, state=None):
    """Poll `check()` until it returns something true (returned); fail naming `what` after `timeout` seconds,
    with what `state()` says at that moment when given (e.g. where the focus is), to tell a failure's cause."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"; found: {state()}" if state else ""))


def focus_state(page) -> str:
    """Where the keyboard focus is on `page` and which caption card the server marked for it (for failures)."""
    return page.evaluate("""() => {
        const a = document.activeElement, w = document.querySelector('.caption-card.focus-me');
        return `focus on ${a ? (a.id || a.tagName) : 'nothing'} (page has focus: ${document.hasFocus()}), ` +
               `marked: ${w ? w.id + ' ' + w.className : 'none'}`; }""")


def fill(page, elem_id: str, text: str) -> None:
    """Type into a textbox of the page; retried because the page may still be hydrating right after load."""
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    for _ in range(20):
        box.fill(text)
        if box.input_value() == text:
            return
        time.sleep(0.25)
    raise AssertionError(f"could not type into #{elem_id}")


def tiny_shapes_data(root: Path, n: int, *, vocab_size: int = 300) -> Path:
    """A shapes dataset of `n` 32-pixel images in root/data and a BPE tokenizer trained on its training captions
    in root/tokenizer, for tiny training runs; returns root."""
    import json

    from captioning.tokenization import train_bpe_tokenizer
    from trainer.data import write_shapes_dataset

    write_shapes_dataset(root / "data", n=n, seed=0, image_size=32)
    train = json.loads((root / "data/annotations/captions_train.json").read_text())["annotations"]
    train_bpe_tokenizer([a["caption"] for a in train], vocab_size=vocab_size).save_pretrained(root / "tokenizer")
    return root


def tiny_run_overrides(shapes: Path, work: Path, name: str, **extra) -> list[str]:
    """`key=value` overrides for a tiny run on `tiny_shapes_data(shapes)`: outputs under `work` (runs, zoo,
    cache), a 32-wide CLIP tower and GPT-2 at 32 pixels; `extra` adds or replaces keys."""
    base = {
        "experiment.name": name, "experiment.output_dir": work / "runs", "experiment.zoo_dir": work / "zoo",
        "data.path": shapes / "data", "data.cache_dir": work / "cache", "model.tokenizer": shapes / "tokenizer",
        "model.image_size": 32, "model.encoder_config.hidden_size": 32, "model.encoder_config.projection_dim": 32,
        "model.decoder_config.n_embd": 32,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def assert_same_run_weights(run_a: Path, run_b: Path, atol: float = 1e-6) -> None:
    """The last saved weights of two training runs (their run folders) are the same tensors, within `atol`."""
    from safetensors.torch import load_file

    a, b = (load_file(run / "state" / "model.safetensors") for run in (run_a, run_b))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol), k
