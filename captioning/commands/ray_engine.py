"""Batch captioning on Ray Data: `python -m captioning caption --engine ray --images MANIFEST --out FOLDER`.

The same captioning as the local engine (`captioning.commands.cli`), spread over the processes of a Ray cluster (a
local one started here by default, or `--address`/`RAY_ADDRESS`):

    manifest rows (image_id, source)
      -> decode + preprocess      Ray tasks: `captioning.pipeline.read_images` (the one rule for unreadable
                                  images) at `preprocessing.needed_side`, then each distinct preprocessing once
                                  (on CPUs Ray Data runs them inside the first model's actors: same resources)
      -> encode, decode captions  one actor pool per model (`Captioner`): the first model of an encoder key
                                  (`captioning.zoo.encoder_key`) runs the encoder once per batch and passes the
                                  features on to the other models with that key; each model decodes with
                                  `captioning.pipeline.caption_features`
      -> Parquet shards           written by this process into the output folder, `shard_size` images each

Manifest (`read_manifest`): a folder (scanned like the local engine's `--images`), a `.csv` or a `.parquet`
file with a column of image paths (`--column`, default `path`) and optionally an `image_id` column (default:
the path as written). Relative paths are relative to the manifest's folder. A source may be a URI: `file://`
is a local path; `s3://`, `gs://`, `hdfs://` and `abfs://` are read with `pyarrow.fs` on the worker
(credentials and filesystem libraries as pyarrow needs them there; only local files are tested here);
other schemes (http) are refused before anything runs.
Every path must be readable from every node of the cluster (a shared filesystem), and every node needs this
checkout at the same path with the same virtualenv (the workers import `captioning` from it).

Output: `part-<run>-<n>.parquet` shards with the columns of the local engine's CSV (`common.CSV_COLUMNS`, typed),
and `_run.json` naming the models, their weights hashes and the decoding settings. A shard is written to a
hidden temporary name and renamed when complete, so a crash leaves only complete shards; re-running the same
command captions only the image ids no complete shard holds (readers of the folder, e.g.
`pandas.read_parquet(FOLDER)`, pass over the hidden and `_` files). Unreadable images are named on stderr
(`skipped: ...`), written nowhere, and tried again by the next run.

Ray is imported only here, and only when the engine runs. Sampling presets draw one random stream per batch
in both engines, so their samples depend on how images are batched; beam and greedy captions do not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..foreign import ForeignInputs
from .common import CSV_COLUMNS, UserError, select_models

RUN_FILE = "_run.json"
SHARD_PREFIX = "part-"
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")  # pyarrow.fs.FileSystem.from_uri reads these
MANIFEST_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
INT_COLUMNS = {"caption_index", "num_beams", "top_k", "no_repeat_ngram_size", "max_new_tokens", "seed"}
FLOAT_COLUMNS = {"score", "length_penalty", "temperature", "top_p"}
ROOT = Path(__file__).resolve().parents[2]  # put on the workers' PYTHONPATH so they import `captioning`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `caption` options that only `--engine ray` reads."""
    group = parser.add_argument_group("--engine ray")
    group.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                       help="Ray cluster to join, host:port of `ray start --head` (default: $RAY_ADDRESS, else a "
                            "local Ray started for this run)")
    group.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all of this machine's)")
    group.add_argument("--actors", type=int, default=1, help="actors per encoder and per model (default 1)")
    group.add_argument("--shard-size", type=int, default=256, help="images per Parquet shard (default 256)")
    group.add_argument("--column", default="path", help="manifest column of image paths/URIs (default: path)")


# ----------------------------------------------------------------------------------------------------------
# Manifest and output folder


@dataclass
class Manifest:
    """The images to caption: ids (unique, the `image_id` written) and sources (paths or URIs), in order."""

    ids: list[str]
    sources: list[str]
    skipped: list[str] = field(default_factory=list)  # folder files that are not images, with the reason


def _resolve(source: str, base: Path) -> str:
    if source.startswith("file://"):
        return source[len("file://"):]
    if "://" in source:
        return source
    path = Path(source).expanduser()
    return str(path if path.is_absolute() else base / path)


def read_manifest(location: str | os.PathLike, *, column: str = "path", recursive: bool = False) -> Manifest:
    """The images a folder, a CSV or a Parquet manifest names (see the module doc); UserError when unusable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..images import IMAGE_EXTENSIONS, ImageLoadError, scan_folder

    location = Path(location)
    if location.is_dir():
        try:
            scan = scan_folder(location, recursive=recursive)
        except ImageLoadError as e:
            raise UserError(str(e)) from None
        if not scan.images:
            raise UserError(f"no images found in {location} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}"
                            f"{'' if recursive else '; add --recursive for sub-folders'})")
        return Manifest(ids=[str(p.relative_to(location)) for p in scan.images], sources=[str(p) for p in scan.images],
                        skipped=[f"{f.path.relative_to(location)}: {f.reason}" for f in scan.skipped])
    kind = MANIFEST_SUFFIXES.get(location.suffix.lower())
    if not location.exists():
        raise UserError(f"--images {location} does not exist; pass a folder of images, a .csv or a .parquet manifest")
    if kind is None:
        raise UserError(f"--images {location} is neither a folder nor a manifest; --engine ray reads a folder, "
                        f"a .csv or a .parquet file with a {column!r} column of image paths")
    try:
        if kind == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(location, convert_options=pacsv.ConvertOptions(
                column_types={column: pa.string(), "image_id": pa.string()}))
        else:
            table = pq.read_table(location)
    except (pa.ArrowInvalid, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read manifest {location} as {kind.upper()} ({first}); "
                        f"it needs a header row and a {column!r} column of image paths") from None
    if column not in table.column_names:
        raise UserError(f"manifest {location} has no column {column!r} (columns: {', '.join(table.column_names)}); "
                        f"name the column of image paths with --column")
    sources = [None if v is None else str(v) for v in table.column(column).to_pylist()]
    empty = [i + 1 for i, v in enumerate(sources) if not v]
    if empty:
        raise UserError(f"manifest {location}: rows {empty[:5]} have no {column!r}; every row needs an image path")
    ids = ([str(v) for v in table.column("image_id").to_pylist()] if "image_id" in table.column_names
           else list(sources))
    if len(set(ids)) != len(ids):
        seen, dupes = set(), []
        for i in ids:
            if i in seen:
                dupes.append(i)
            seen.add(i)
        raise UserError(f"manifest {location} names {len(dupes)} image id(s) twice, e.g. {dupes[:3]}; "
                        "image ids must be unique (they are how a re-run knows what is done)")
    if not ids:
        raise UserError(f"manifest {location} has no rows")
    base = location.resolve().parent
    resolved = [_resolve(s, base) for s in sources]
    schemes = sorted({s.split("://", 1)[0].lower() for s in resolved if "://" in s} - set(URI_SCHEMES))
    if schemes:
        raise UserError(f"manifest {location} has URIs of scheme(s) {schemes}; the Ray engine reads local paths, "
                        f"file:// and the schemes pyarrow's filesystems read ({', '.join(URI_SCHEMES)}); download "
                        "other images first and list their paths")
    return Manifest(ids=ids, sources=resolved)


def done_ids(out: Path) -> set[str]:
    """Image ids in the complete shards of `out` (a shard that cannot be read is renamed `_broken-*` and reported)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done: set[str] = set()
    for shard in sorted(out.glob(f"{SHARD_PREFIX}*.parquet")):
        try:
            done.update(pq.read_table(shard, columns=["image_id"]).column("image_id").to_pylist())
        except (pa.ArrowInvalid, OSError, KeyError) as e:
            shard.rename(shard.with_name(f"_broken-{shard.name}"))
            print(f"warning: {shard} is not a complete shard ({e}); renamed to _broken-{shard.name}, its images "
                  "are captioned again", file=sys.stderr)
    return done


def _check_run(out: Path, run: dict[str, Any]) -> None:
    """Refuse to mix captions of other models or settings into one output folder."""
    record = out / RUN_FILE
    if record.is_file():
        before = json.loads(record.read_text())
        if before != run:
            raise UserError(f"{out} holds captions of models {[m['name'] for m in before['models']]} with settings "
                            f"{before['settings']}; this run has models {[m['name'] for m in run['models']]} with "
                            f"{run['settings']}. Pass a new --out folder, or the same options to resume")
        return
    tmp = out / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(run, indent=2) + "\n")
    os.replace(tmp, record)


def shard_schema():
    """The shards' columns: those of the local engine's CSV, in its order, typed."""
    import pyarrow as pa

    return pa.schema([(c, pa.int64() if c in INT_COLUMNS else pa.float64() if c in FLOAT_COLUMNS else pa.string())
                      for c in CSV_COLUMNS])


def write_shard(out: Path, rows: list[dict[str, Any]], name: str) -> Path:
    """Write rows as one Parquet shard: to a hidden temporary file first, renamed when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{c: row.get(c) for c in CSV_COLUMNS} for row in rows], schema=shard_schema())
    final, tmp = out / name, out / f".{name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


# ----------------------------------------------------------------------------------------------------------
# The stages (run on Ray workers)


def _read_source(source: str) -> str | bytes:
    """A local path as is (load_image reads it); a URI's bytes through pyarrow's filesystems."""
    if "://" not in source:
        return source
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(source)
    with filesystem.open_input_stream(path) as f:
        return f.read()


def decode_and_preprocess(batch: dict[str, np.ndarray], processors: dict[str, Any],
                          min_side: int | None) -> dict[str, np.ndarray]:
    """Load a batch's images and preprocess them once per distinct preprocessing (`pixels:<i>` columns).

    Unreadable images keep their row with the problem in `error` (zero pixels), so the driver reports them.
    """
    from PIL import Image

    from ..pipeline import read_images

    ids, problems, sources = [str(i) for i in batch["image_id"]], {}, []
    for image_id, source in zip(ids, batch["source"]):
        try:
            sources.append((image_id, _read_source(str(source))))
        except (OSError, ValueError) as e:  # a URI that cannot be fetched (pyarrow's ArrowInvalid is a ValueError)
            problems[image_id] = f"Could not read image '{source}': {e}"
    read = read_images(sources, min_side=min_side)
    problems.update(read.problems)
    ok = [i for i, image_id in enumerate(ids) if image_id not in problems]
    out = {"image_id": np.array(ids, dtype=object),
           "error": np.array([problems.get(i, "") for i in ids], dtype=object)}
    for column, processor in processors.items():
        images = read.images or [Image.new("RGB", (64, 64))]  # the blank image only gives the tensor's shape
        if isinstance(processor, ForeignInputs):  # another maker's model: each of its inputs in a column
            arrays = {f"{column}/{k}": v.numpy() for k, v in processor(images).items()}
        else:
            arrays = {column: processor(images=images, return_tensors="pt")["pixel_values"].numpy()}
        for name, array in arrays.items():
            full = np.zeros((len(ids), *array.shape[1:]), dtype=array.dtype)
            if read.images:
                full[ok] = array
            out[name] = full
    return out


class Captioner:
    """Actor of one model's pool: its captions of a batch (`captioning.pipeline.caption_features`).

    The first model of an encoder key also runs that encoder, once per batch, on its preprocessed pixels
    (`pixels` column) and passes the features on (`features` column) to the other models with that key,
    which read them instead of encoding again. Unreadable images' rows (`error` set) get no captions.
    """

    def __init__(self, entry: str, column: str, features: str, pixels: str | None, drop: Sequence[str], settings,
                 use_gpu: bool, threads: int):
        import torch

        from ..zoo import load_entry

        torch.set_num_threads(threads)
        self.model = load_entry(entry, device="cuda" if use_gpu else "cpu")
        self.column, self.features, self.pixels, self.drop, self.settings = column, features, pixels, drop, settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from ..pipeline import caption_features

        ok = np.flatnonzero(batch["error"] == "")
        if self.pixels is not None and not self.model.foreign:  # the encoder pass of this key, shared by the
            full = np.zeros((len(batch["error"]), 1), dtype=np.float32)  # models after this one (none readable:
            if len(ok):                                                  # nothing to encode)
                features = self.model.encode(torch.from_numpy(np.ascontiguousarray(batch[self.pixels][ok])))
                features = features.float().cpu().numpy()
                full = np.zeros((len(batch["error"]), *features.shape[1:]), dtype=features.dtype)
                full[ok] = features
            batch = {**batch, self.features: full}
        # A column `pixels:<i>/<input>` belongs to pixels:<i> (another maker's model's inputs) and goes with it.
        out = {k: v for k, v in batch.items() if k.split("/")[0] not in self.drop}
        captions = np.empty(len(batch["error"]), dtype=object)
        scores = np.empty(len(batch["error"]), dtype=object)
        captions[:], scores[:] = [[]] * len(captions), [[]] * len(scores)
        if len(ok):
            if self.model.foreign:  # its processor's inputs go to its generate as they are
                from transformers import BatchFeature

                prefix = f"{self.pixels}/"
                features = BatchFeature({k[len(prefix):]: torch.from_numpy(np.ascontiguousarray(v[ok]))
                                         for k, v in batch.items() if k.startswith(prefix)})
            else:
                features = torch.from_numpy(np.ascontiguousarray(batch[self.features][ok]))
            names = [str(batch["image_id"][i]) for i in ok]
            for i, result in zip(ok, caption_features(self.model, features, names, self.settings)):
                captions[i], scores[i] = list(result.captions), [float(s) for s in result.scores]
        out[f"captions:{self.column}"], out[f"scores:{self.column}"] = captions, scores
        return out


# ----------------------------------------------------------------------------------------------------------
# The driver


def _check_reachable(address: str) -> None:
    """One clear line instead of Ray's minutes of reconnect attempts when nothing listens at the address."""
    if address == "auto":
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r} is not host:port (e.g. 10.0.0.5:6379, as `ray start --head` "
                        "prints) or ray://host:10001")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"no Ray cluster answers at --address {address} ({e.strerror or e}); start one with "
                        "`ray start --head` on that machine, or leave --address and RAY_ADDRESS unset for a local Ray") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> str:
    """Join the cluster at `address`, or start a local Ray (no dashboard, no usage stats, logs in a temporary
    folder); reuses a Ray this process already started. Returns where the logs are."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return "the Ray session's logs folder (/tmp/ray/session_latest/logs unless set otherwise)"
    # Workers import `captioning` from this checkout; on a cluster it must lie at the same path on every node.
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath, "RAY_USAGE_STATS_ENABLED": "0"}}
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
        return f"the logs folder of the cluster at {address} (/tmp/ray/session_latest/logs on its nodes by default)"
    logs = tempfile.mkdtemp(prefix="caption-zoo-ray-")
    # The local raylet's workers inherit this environment; a runtime_env would cost them their prestarted workers.
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, _temp_dir=logs, log_to_driver=False,
             logging_level=logging.ERROR)
    return logs


def _batches(ds, **kwargs) -> Iterator[Any]:
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow", **kwargs)


def actor_resources(cluster: dict[str, float], actors: int) -> tuple[dict[str, float], float]:
    """(Ray resources of each model actor, CPUs of each decoding task) for a cluster with `cluster` resources.

    Every actor must fit at once, or Ray Data waits forever for the pools it cannot start: with GPUs each
    actor gets one, or a share when there are fewer GPUs than actors; on CPUs each actor gets a share of the
    CPUs, and one share is kept for the decoding tasks.
    """
    share = max(0.01, cluster.get("CPU", 1) / (actors + 1))
    if cluster.get("GPU", 0) > 0:
        return {"num_gpus": min(1.0, cluster["GPU"] / actors), "num_cpus": min(1.0, share)}, min(1.0, share)
    return {"num_cpus": share}, share


def plan_stages(models: Sequence[Any]) -> tuple[dict[str, str], dict[str, Any], list[tuple[Any, list[int]]]]:
    """Which models share an encoder pass and which preprocessing each reads, as the local engine shares them.

    Returns (preprocess key -> pixels column, pixels column -> image processor, [(the first model of an
    encoder key, indices of every model with that key)] in the models' order).
    """
    pixels_of: dict[str, str] = {}
    processors: dict[str, Any] = {}
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(models):
        if m.preprocess_key not in pixels_of:
            pixels_of[m.preprocess_key] = f"pixels:{len(pixels_of)}"
            processors[pixels_of[m.preprocess_key]] = m.model.inputs if m.foreign else m.image_processor
        groups.setdefault(m.encoder_key, []).append(i)
    return pixels_of, processors, [(models[idx[0]], idx) for idx in groups.values()]


def cmd_caption_ray(args: argparse.Namespace) -> int:
    """`python -m captioning caption --engine ray`: see the module doc."""
    from tqdm import tqdm

    from ..generation import get_settings
    from ..pipeline import CaptionResult
    from ..preprocessing import needed_side
    from ..zoo import ModelCache, ZooError

    for option in ("actors", "shard_size", "num_cpus", "threads"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.address and args.num_cpus:
        raise UserError(f"--num-cpus sizes a local Ray; with --address {args.address} (or RAY_ADDRESS) the cluster's "
                        "own CPUs are used: leave one of the two out")
    out = Path(args.out)
    if out.suffix.lower() in (".csv", ".json") or out.is_file():
        raise UserError(f"--engine ray writes a folder of Parquet shards; --out {out} is a file name; "
                        "pass --out FOLDER (e.g. --out captions/)")
    overrides = {k: v for k, v in {"max_new_tokens": args.max_new_tokens, "num_captions": args.num_captions,
                                   "seed": args.seed}.items() if v is not None}
    manifest = read_manifest(args.images, column=args.column, recursive=args.recursive)
    try:
        settings = get_settings(args.preset, **overrides)
        model_paths = select_models(Path(args.zoo), args.models)
        models = [ModelCache(max_models=len(model_paths)).get(p) for p in model_paths]
    except (ValueError, ZooError) as e:
        raise UserError(str(e)) from None
    for line in manifest.skipped:
        print(f"skipped: {line}", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".{SHARD_PREFIX}*.tmp"):  # a shard a crashed run did not finish
        stale.unlink()
    _check_run(out, {"models": [{"name": m.name, "weights_hash": m.weights_hash} for m in models],
                     "settings": settings.to_dict(), "columns": CSV_COLUMNS})
    done = done_ids(out)
    todo = [(i, s) for i, s in zip(manifest.ids, manifest.sources) if i not in done]
    already = len(manifest.ids) - len(todo)
    if not todo:
        print(f"nothing to do: all {len(manifest.ids)} images are captioned in {out}", file=sys.stderr)
        return 0

    min_side = needed_side(models)
    pixels_of, processors, plan = plan_stages(models)
    entries = [str(m.path) for m in models]
    names = [m.name for m in models]
    hashes = {str(i): (m.name, m.weights_hash) for i, m in enumerate(models)}  # column -> (model, weights)
    del models  # the actors load their own copies

    logs = connect(args.address, args.num_cpus)
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notices would bury the `skipped:` lines
    resources, decode_cpus = actor_resources(ray.cluster_resources(), len(names) * args.actors)
    use_gpu = "num_gpus" in resources
    threads = args.threads or max(1, int(resources["num_cpus"]))
    pool = ray.data.ActorPoolStrategy(size=args.actors)

    ds = ray.data.from_items([{"image_id": i, "source": s} for i, s in todo],
                             override_num_blocks=max(1, min(len(todo) // args.batch_size, 200)))
    ds = ds.map_batches(decode_and_preprocess, batch_size=args.batch_size, batch_format="numpy",
                        num_cpus=decode_cpus, fn_kwargs={"processors": processors, "min_side": min_side})
    pixels_left = {col: sum(1 for m, _ in plan if pixels_of[m.preprocess_key] == col) for col in processors}
    for g, (first, indices) in enumerate(plan):
        col = pixels_of[first.preprocess_key]
        pixels_left[col] -= 1
        for n, i in enumerate(indices):
            drop = ([col] if n == 0 and pixels_left[col] == 0 else []) + (
                [f"features:{g}"] if n == len(indices) - 1 else [])
            ds = ds.map_batches(Captioner, batch_size=args.batch_size, batch_format="numpy", compute=pool,
                                fn_constructor_args=(entries[i], str(i), f"features:{g}", col if n == 0 else None,
                                                     drop, settings, use_gpu, threads), **resources)

    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    buffer: list[dict[str, Any]] = []
    buffered = shards = rows = captioned = skipped = 0
    settings_dict = settings.to_dict()
    progress = tqdm(total=len(todo), unit="image", disable=args.quiet or None, file=sys.stderr)

    def flush() -> None:
        nonlocal buffer, buffered, shards
        if buffer:
            write_shard(out, buffer, f"{SHARD_PREFIX}{run_id}-{shards:05d}.parquet")
            shards += 1
        buffer, buffered = [], 0

    try:
        for table in _batches(ds):
            batch = table.to_pydict()
            for r, image_id in enumerate(batch["image_id"]):
                if batch["error"][r]:
                    print(f"skipped: {batch['error'][r]}", file=sys.stderr)
                    skipped += 1
                    continue
                for column, (name, weights_hash) in hashes.items():
                    result = CaptionResult(image_name=image_id, model_name=name,
                                           captions=batch[f"captions:{column}"][r],
                                           scores=batch[f"scores:{column}"][r], settings=settings_dict,
                                           weights_hash=weights_hash)
                    buffer.extend(result.rows(CSV_COLUMNS))
                    rows += len(result.captions)
                captioned += 1
                buffered += 1
                if buffered >= args.shard_size:
                    flush()
            progress.update(table.num_rows)
        flush()
    except ray.exceptions.RayError as e:
        flush()  # what was captioned is kept; the next run resumes after it
        raise UserError(f"the Ray job failed ({_cause(e)}); {shards} shard(s) written to "
                        f"{out} are kept and a re-run resumes after them; logs in {logs}") from None
    finally:
        progress.close()
    notes = [f"{already} image(s) already done"] if already else []
    if skipped:
        notes.append(f"skipped {skipped} unreadable image(s)")
    print(f"wrote {rows} captions ({captioned} images x {len(names)} models) to {out} in {shards} shard(s)"
          + (f"; {', '.join(notes)}" if notes else ""), file=sys.stderr)
    return 0 if rows or already else 1


def _cause(error: BaseException) -> str:
    """The exception a worker raised, as `Type: message`, from under Ray's wrappers."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line for line in str(error).splitlines() if line.strip() and "DataContext" not in line]
    return f"{type(error).__name__}: {lines[-1].strip() if lines else ''}"
