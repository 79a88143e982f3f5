"""Caption Zoo's app: caption images with zoo models side by side, rate every caption 0/1/2 (optionally blind),
compare models pairwise, and get per-model accuracy with intervals, rater agreement and spreadsheet exports.

Run it (offline; nothing is downloaded, no share link, no analytics):

    python app.py [--zoo model_zoo] [--db ratings.sqlite] [--host 127.0.0.1] [--port 7860] [--auth USER:PASS]
                  [--admin USER ...] [--api-token TOKEN] [--max-batch-wait-ms MS]

This file is the entry point only: arguments, build, launch. The page is the `page` package (one module per
view, `page/__init__.py` lists them); the REST API it is mounted on is `server/`; the work is `rating/` and
`captioning/`. One process serves the page at / and the REST API (/api/v1/caption, /api/v1/models,
/healthz, /readyz, /metrics, docs at /docs and /redoc).

Where things are kept: ratings, captions and evaluation sets in the SQLite file given by --db (each rating is
written the moment it is clicked, so a reload or restart loses nothing); images as upright, downsized PNG
copies named by the hash of the file's bytes in the --image-cache folder, the only folder the page serves.
"""

from __future__ import annotations

import argparse
import os
import sys

# Before gradio / huggingface_hub are imported: no telemetry, no hub calls, ever.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import uvicorn

from page.blocks import build_app
from page.context import DEFAULT_DB, DEFAULT_IMAGE_CACHE, DEFAULT_SAMPLES, DEFAULT_ZOO
from page.server import DEFAULT_MAX_FILE_SIZE, build_server, listen, parse_admins, parse_auth, port_problem


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Caption Zoo: compare zoo captioners side by side and rate captions.")
    parser.add_argument("--zoo", default=DEFAULT_ZOO, help=f"zoo folder (default: {DEFAULT_ZOO})")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file for ratings (default: {DEFAULT_DB})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--auth", default=None, help="require a login, given as USER:PASS")
    parser.add_argument("--admin", action="append", default=[], metavar="USER",
                        help="a user who may see every blind set's model names and results, besides the set's "
                             "owner (repeatable or comma-separated); the login name with --auth, else the rater name")
    parser.add_argument("--samples", default=str(DEFAULT_SAMPLES),
                        help="folder of sample images (default: sample_images)")
    parser.add_argument("--image-cache", default=str(DEFAULT_IMAGE_CACHE),
                        help="folder for the display copies of images (default: <temp>/caption-zoo/images)")
    parser.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE,
                        help="largest upload accepted, on the page and per image in the REST API (default: 25mb)")
    parser.add_argument("--api-token", default=os.environ.get("CAPTION_ZOO_API_TOKEN") or None, metavar="TOKEN",
                        help="also accept `Authorization: Bearer TOKEN` on the REST API and /metrics (default: "
                             "$CAPTION_ZOO_API_TOKEN; with neither this nor --auth the API is open)")
    parser.add_argument("--max-batch-wait-ms", type=float, default=10.0, metavar="MS",
                        help="how long a REST caption request waits for others to be captioned in one batch "
                             "(default: 10; 0 = no micro-batching)")
    parser.add_argument("--max-batch", type=int, default=32, metavar="IMAGES",
                        help="most images in one micro-batch (default: 32)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        auth = parse_auth(args.auth)
        problem = port_problem(args.host, args.port)  # before anything is opened: a busy port fails at once
        if problem:
            raise ValueError(problem)
        if args.max_batch_wait_ms < 0 or args.max_batch < 1:
            raise ValueError(f"--max-batch-wait-ms must be >= 0 and --max-batch >= 1, got "
                             f"{args.max_batch_wait_ms:g} and {args.max_batch}")
        demo = build_app(args.zoo, args.db, samples_dir=args.samples, image_dir=args.image_cache,
                         admins=parse_admins(args.admin))
        demo.queue(default_concurrency_limit=4)
        server = build_server(demo, host=args.host, port=args.port, auth=auth, max_file_size=args.max_file_size,
                              api_token=args.api_token, max_batch_wait_ms=args.max_batch_wait_ms,
                              max_batch=args.max_batch)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        listener = listen(args.host, args.port)
    except OSError as e:  # taken between the check and now
        print(f"error: {port_problem(args.host, args.port) or e}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    print(f"Caption Zoo on http://{shown}:{args.port} (REST API /api/v1, docs /docs, metrics /metrics)", flush=True)
    # Gradio keeps event streams open; do not wait for them for ever on Ctrl+C
    uvicorn.Server(uvicorn.Config(server, log_level="warning", timeout_graceful_shutdown=3)).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
