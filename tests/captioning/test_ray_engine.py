"""Protects `python -m captioning caption --engine ray` (captioning/commands/ray_engine.py) on a real local Ray (2 CPUs):
its Parquet shards hold exactly the local engine's captions (same columns) for every image and model, a re-run
captions only the image ids no complete shard holds, unreadable files are named as the local engine names
them, CSV / Parquet / folder manifests work, a second process joins the cluster with --address, and user
mistakes end with one line and a non-zero exit. One Ray session serves the module (Ray starts slowly).
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file, save_file

from captioning.commands import cli, common
from captioning.zoo import WEIGHTS_FILE, load_entry
from helpers import build_tiny_zoo, free_port, write_images

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["--max-new-tokens", "6", "--quiet", "--batch-size", "2"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """alpha and beta share an encoder (beta gets alpha's encoder weights), gamma has its own."""
    root = build_tiny_zoo(tmp_path_factory.mktemp("zoo"), ["alpha", "beta", "gamma"])
    alpha, beta = load_file(root / "alpha" / WEIGHTS_FILE), load_file(root / "beta" / WEIGHTS_FILE)
    beta.update({k: v for k, v in alpha.items() if k.startswith("encoder.")})
    save_file(beta, root / "beta" / WEIGHTS_FILE)
    return root


@pytest.fixture(scope="module")
def ray_session():
    from captioning.commands.ray_engine import connect

    ray = pytest.importorskip("ray")
    before = os.environ.get("PYTHONPATH")
    connect(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    if before is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    write_images(folder, 5, broken=True)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def local_rows(zoo, images, tmp_path_factory):
    """The local engine's CSV rows for the image folder: what the Ray engine must reproduce."""
    out = tmp_path_factory.mktemp("local") / "captions.csv"
    assert cli.main(["caption", "--zoo", str(zoo), "--images", str(images), "--out", str(out), *COMMON]) == 0
    return list(csv.DictReader(out.open()))


def as_csv(table: pa.Table) -> list[dict[str, str]]:
    """Shard rows as the CSV writer writes them (None -> "", numbers -> str)."""
    return [{k: "" if v is None else str(v) for k, v in row.items()} for row in table.to_pylist()]


def key(row):
    return row["image_id"], row["model_name"], row["caption_index"]


def read_output(folder: Path) -> pa.Table:
    return pq.read_table(folder)  # a reader of the folder passes over _run.json and hidden temp files


def caption_ray(zoo, images, out, *extra):
    return cli.main(["caption", "--engine", "ray", "--zoo", str(zoo), "--images", str(images), "--out", str(out),
                     "--shard-size", "2", *COMMON, *extra])


def test_shared_encoder_plan(zoo):
    from captioning.commands.ray_engine import plan_stages

    models = [load_entry(zoo / name) for name in ("alpha", "beta", "gamma")]
    pixels_of, processors, plan = plan_stages(models)
    assert [(first.name, indices) for first, indices in plan] == [("alpha", [0, 1]), ("gamma", [2])]
    assert len(processors) == 1 and set(pixels_of.values()) == set(processors)


def test_every_actor_fits_the_cluster():
    from captioning.commands.ray_engine import actor_resources

    # 2 CPUs, 3 model actors: each gets 0.5 CPU and decoding keeps 0.5, so all start at once
    assert actor_resources({"CPU": 2.0}, 3) == ({"num_cpus": 0.5}, 0.5)
    # one GPU for three models: they share it
    resources, _ = actor_resources({"CPU": 16.0, "GPU": 1.0}, 3)
    assert resources == {"num_gpus": 1 / 3, "num_cpus": 1.0}
    assert actor_resources({"CPU": 64.0, "GPU": 8.0}, 3)[0]["num_gpus"] == 1.0


def test_output_equals_the_local_engine_and_a_rerun_resumes(zoo, images, local_rows, ray_session, tmp_path, capsys):
    out = tmp_path / "out"
    assert caption_ray(zoo, images, out) == 0
    err = capsys.readouterr().err
    assert "skipped: notes.txt:" in err and f"skipped: '{images / 'broken.jpg'}' is not an image file" in err
    assert "wrote 15 captions (5 images x 3 models)" in err and "skipped 1 unreadable image(s)" in err
    assert "Traceback" not in err
    table = read_output(out)
    assert table.column_names == common.CSV_COLUMNS
    assert sorted(as_csv(table), key=key) == sorted(local_rows, key=key)
    shards = sorted(out.glob("part-*.parquet"))
    assert len(shards) == 3, "5 images in shards of 2"

    # a crash lost one shard (and left a half-written temp file): only its images are captioned again
    lost = set(pq.read_table(shards[1], columns=["image_id"]).column("image_id").to_pylist())
    shards[1].unlink()
    (out / ".part-crashed-00000.parquet.tmp").write_bytes(b"PAR1 half")
    assert caption_ray(zoo, images, out) == 0
    err = capsys.readouterr().err
    assert f"wrote {len(lost) * 3} captions ({len(lost)} images x 3 models)" in err and "3 image(s) already done" in err
    new = sorted(set(out.glob("part-*.parquet")) - set(shards))
    assert len(new) == 1 and set(pq.read_table(new[0]).column("image_id").to_pylist()) == lost
    assert not list(out.glob(".*.tmp"))
    assert sorted(as_csv(read_output(out)), key=key) == sorted(local_rows, key=key)

    # other models into the same folder would mix two runs: refused before anything runs
    assert caption_ray(zoo, images, out, "--models", "alpha") == 2
    err = capsys.readouterr().err
    assert "holds captions of models ['alpha', 'beta', 'gamma']" in err and "new --out folder" in err


def test_csv_and_parquet_manifests_and_joining_with_address(zoo, images, local_rows, ray_session, tmp_path):
    by_image = {}
    for row in local_rows:
        if row["model_name"] == "gamma":
            by_image[row["image_id"]] = row["caption"]
    names = sorted(by_image)
    # CSV: paths relative to the manifest's folder, ids given; a subprocess joins the running Ray with --address
    manifest = tmp_path / "list.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "path"])
        for name in names:
            writer.writerow([f"id-{name}", os.path.relpath(images / name, tmp_path)])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "captioning", "caption", "--engine", "ray", "--zoo", str(zoo),
                           "--images", str(manifest), "--out", str(tmp_path / "from-csv"), "--models", "gamma",
                           "--address", ray_session, *COMMON], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    got = {r["image_id"]: r["caption"] for r in read_output(tmp_path / "from-csv").to_pylist()}
    assert got == {f"id-{name}": caption for name, caption in by_image.items()}

    # Parquet: a column named with --column, absolute paths and a file:// URI; ids are the paths as written
    sources = [str(images / names[0]), f"file://{images / names[1]}"]
    pq.write_table(pa.table({"uri": sources}), tmp_path / "list.parquet")
    assert caption_ray(zoo, tmp_path / "list.parquet", tmp_path / "from-parquet", "--models", "gamma",
                       "--column", "uri") == 0
    got = {r["image_id"]: r["caption"] for r in read_output(tmp_path / "from-parquet").to_pylist()}
    assert got == {sources[0]: by_image[names[0]], sources[1]: by_image[names[1]]}


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "captioning", "caption", "--engine", "ray", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_user_mistakes_give_one_line(zoo, images, tmp_path, capsys):
    (tmp_path / "list.txt").write_text("a.png\n")
    (tmp_path / "nocol.csv").write_text("file,label\na.png,cat\n")
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "dupes.csv").write_text("path\na.png\na.png\n")
    (tmp_path / "web.csv").write_text("path\nhttps://example.com/a.png\n")
    cases = [
        (tmp_path / "list.txt", "out", "is neither a folder nor a manifest"),
        (tmp_path / "nocol.csv", "out", "has no column 'path' (columns: file, label); name the column"),
        (tmp_path / "bad.parquet", "out", "cannot read manifest"),
        (tmp_path / "dupes.csv", "out", "names 1 image id(s) twice"),
        (tmp_path / "missing.csv", "out", "does not exist"),
        (tmp_path / "web.csv", "out", "has URIs of scheme(s) ['https']"),
        (images, "captions.csv", "writes a folder of Parquet shards; --out"),
        (images, "out --address 127.0.0.1:1 --num-cpus 2", "--num-cpus sizes a local Ray; with --address"),
    ]
    for manifest, out, message in cases:
        out, *extra = out.split()
        code = cli.main(["caption", "--engine", "ray", "--zoo", str(zoo), "--images", str(manifest),
                         "--out", str(tmp_path / out), "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_unreachable_address_is_one_line(zoo, images, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = run_cli("--zoo", str(zoo), "--images", str(images), "--out", str(tmp_path / "out"), "--quiet",
                   "--address", address)
    assert proc.returncode == 2
    assert f"error: no Ray cluster answers at --address {address}" in proc.stderr
    assert "ray start --head" in proc.stderr and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error")] == proc.stderr.strip().splitlines()[-1:]


def test_another_makers_model_captions_as_in_the_local_engine(zoo, images, ray_session, tmp_path, capsys):
    """A foreign entry (its processor's inputs travel as columns) beside our own: the same rows as locally."""
    from foreign_models import build_llava

    mixed = tmp_path / "zoo"
    shutil.copytree(zoo / "alpha", mixed / "alpha")
    build_llava(mixed / "llava-tiny")
    local = tmp_path / "local.csv"
    assert cli.main(["caption", "--zoo", str(mixed), "--images", str(images), "--out", str(local), *COMMON]) == 0
    assert caption_ray(mixed, images, tmp_path / "out") == 0
    assert "wrote 10 captions (5 images x 2 models)" in capsys.readouterr().err
    rows = sorted(as_csv(read_output(tmp_path / "out")), key=key)
    assert rows == sorted(csv.DictReader(local.open()), key=key)
    assert {r["model_name"] for r in rows} == {"alpha", "llava-tiny"}
