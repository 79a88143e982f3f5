"""Caption Zoo's app: caption images with zoo models side by side, rate every caption 0/1/2 (optionally blind),
compare models pairwise, and get per-model accuracy with intervals, rater agreement and spreadsheet exports.

Run it (offline; nothing is downloaded, no share link, no analytics):

    python app.py [--zoo model_zoo] [--db ratings.sqlite | --db postgresql://USER:PASS@HOST:5432/DB]
                  [--host 127.0.0.1] [--port 7860] [--auth USER:PASS | --login] [--admin USER ...]
                  [--api-token TOKEN] [--max-batch-wait-ms MS]

Team evaluation: `--login` signs people in with the accounts of the rating database (add the first with
`python -m rating users add NAME --role admin --db DB`); the signed-in account is the rater, admins are the
accounts with role admin, and only owners and admins create sets. The page and the REST API both check them.

This file is the entry point only: arguments, build, launch. The page is the `page` package (one module per
view, `page/__init__.py` lists them); the REST API it is mounted on is `server/`; the work is `rating/` and
`captioning/`. One process serves the page at / and the REST API (/api/v1/caption, /api/v1/models,
/healthz, /readyz, /metrics, docs at /docs and /redoc).

Where things are kept: ratings, captions, evaluation sets and accounts in the database given by --db (an SQLite
file, or a team's PostgreSQL; default $CAPTION_ZOO_DB, else ratings.sqlite; each rating is written the moment it
is clicked, so a reload or restart loses nothing); images as upright, downsized PNG
copies named by the hash of the file's bytes in the --image-cache folder, the only folder the page serves.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
from rating import accounts
from rating.database import DatabaseError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Caption Zoo: compare zoo captioners side by side and rate captions.")
    parser.add_argument("--zoo", default=DEFAULT_ZOO, help=f"zoo folder (default: {DEFAULT_ZOO})")
    parser.add_argument("--db", default=os.environ.get("CAPTION_ZOO_DB") or DEFAULT_DB, metavar="FILE|URL",
                        help="the rating database: an SQLite file or postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
                             f"(default: $CAPTION_ZOO_DB, else {DEFAULT_DB})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--auth", default=None, help="require a login, given as USER:PASS")
    parser.add_argument("--login", action="store_true",
                        help="sign in with the accounts of the rating database (python -m rating users add NAME "
                             "--role admin --db DB): page and REST API; the account is the rater; not with --auth")
    parser.add_argument("--admin", action="append", default=[], metavar="USER",
                        help="a user who may see every blind set's model names and results, besides the set's "
                             "owner (repeatable or comma-separated); the login name with --auth, else the rater name; "
                             "with --login the admins are the accounts with role admin instead")
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
    if args.login and args.auth is not None:
        print("error: --login and --auth cannot be used together: --login signs in with the accounts of the rating "
              "database, --auth with one USER:PASS; choose one", file=sys.stderr)
        return 2
    if args.login and args.admin:
        print("note: --admin is not used with --login: the admins are the accounts with role admin "
              "(python -m rating users role NAME admin)", file=sys.stderr)
    try:
        auth = parse_auth(args.auth)
        problem = port_problem(args.host, args.port)  # before anything is opened: a busy port fails at once
        if problem:
            raise ValueError(problem)
        if args.max_batch_wait_ms < 0 or args.max_batch < 1:
            raise ValueError(f"--max-batch-wait-ms must be >= 0 and --max-batch >= 1, got "
                             f"{args.max_batch_wait_ms:g} and {args.max_batch}")
        demo = build_app(args.zoo, args.db, samples_dir=args.samples, image_dir=args.image_cache,
                         admins=parse_admins(args.admin), login=args.login)
        if args.login and not accounts.list_users(demo.ctx.store):
            db = shlex.quote(args.db) if demo.ctx.store.path is not None else "DB"  # a URL may hold a password
            raise ValueError(f"--login needs an account in the rating database {demo.ctx.store.location}, and it has "
                             f"none; add the first with: python -m rating users add NAME --role admin --db {db}")
        demo.queue(default_concurrency_limit=4)
        server = build_server(demo, host=args.host, port=args.port, auth=auth, max_file_size=args.max_file_size,
                              api_token=args.api_token, max_batch_wait_ms=args.max_batch_wait_ms,
                              max_batch=args.max_batch, login=args.login)
    except (ValueError, RuntimeError, OSError, DatabaseError) as e:  # DatabaseError: names host:port, no password
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
