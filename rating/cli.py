"""Command line over the rating workflow the app uses: `python -m rating import|results|export|sets|users|copy`.

    import FILE --set S [--images DIR] [--rater R] [--sheet NAME] [--scale 1-4] [--overlap R] [--owner USER]
           [--blind]                                                 captions (+ scores, gold, references) in;
                                                                     --scale, --overlap (raters per caption),
                                                                     --owner, --blind: a new set's (default 0-2,
                                                                     everyone, the rater, names shown)
    import-dataset PATH --set S [--split test] [--limit N] [--models a,b]  a split's images + references
    results --set S [--json | --csv]                                 the app's Results table (and agreement)
    agreement --set S [--json] [--no-bertscore] [--no-meteor]        Kendall tau-c / tau-b of each metric against
                                                                     the human scores (judgments and caption means)
    export --set S --out DIR                                         summary + raw ratings, CSV and XLSX
    gold --set S --from-rater R                                      R's scores become the gold scores
    sets                                                             every set with its counts
    users add NAME --role rater|owner|admin                          a team member; the password comes from stdin
                                                                     (asked twice on a terminal)
    users list [--json]                                              every user, role and token count
    users passwd NAME | users role NAME ROLE | users remove NAME     change a password or role; remove a user
                                                                     and their tokens
    users token NAME [--label TEXT]                                  a new API token, printed once on stdout
                                                                     (send it as `Authorization: Bearer TOKEN`)
    users revoke NAME                                                revoke every API token of NAME
    copy SRC DST                                                     the whole database SRC into the new, empty
                                                                     DST, e.g. a file to PostgreSQL; counts checked

Every command but copy takes `--db DB` (default ratings.sqlite, the app's default): a file path, an sqlite:///
URL or postgresql://USER:PASSWORD@HOST:PORT/DATABASE (messages never show the password). They call the same
functions as the app (rating.intake.import_captions_file, rating.sets.set_results, results_table, export_set,
rating.accounts, rating.copying), so the CLI and the page agree. User mistakes (an unreachable database
included) end with one line `error: ...` on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

DEFAULT_DB = "ratings.sqlite"


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def _store(args: argparse.Namespace, *, create: bool = False) -> Any:
    """The store `--db` names. A file must exist unless `create`; a server database must answer."""
    from rating.database import DatabaseError, database_url
    from rating.store import RatingStore

    try:
        url = database_url(args.db)
    except ValueError as e:
        raise UserError(str(e)) from None
    if url.get_backend_name() == "sqlite" and url.database and not create and not Path(url.database).is_file():
        raise UserError(f"no rating database at {url.database}; give the app's database with --db PATH "
                        "(or import captions first: python -m rating import FILE --set NAME)")
    try:
        return RatingStore(args.db)
    except DatabaseError as e:
        raise UserError(str(e)) from None


def cmd_import(args: argparse.Namespace) -> int:
    from rating import intake, sets
    from rating.validation import validate_name

    if args.images is not None and not Path(args.images).is_dir():
        raise UserError(f"--images {args.images} is not a folder; give the folder that holds the images the file names")
    from rating.store import EvaluationSetNotFoundError
    from rating.validation import parse_scale

    scale = parse_scale(args.scale) if args.scale is not None else None
    if args.overlap is not None and args.overlap < 1:
        raise UserError(f"--overlap is the number of raters per caption, at least 1; got {args.overlap}")
    owner = validate_name(args.owner, "--owner user name") if args.owner is not None else None
    store = _store(args, create=True)

    def run() -> intake.ImportRun:
        return intake.import_captions_file(store, args.set, args.file, args.images, rater=args.rater,
                                           sheet=args.sheet, image_dir=args.display_dir, scale=scale)

    try:
        if args.rater is not None:
            validate_name(args.rater, "rater name")
        try:
            done = run()
        except EvaluationSetNotFoundError:  # raised once the file is known to be importable: create the set
            sets.open_set(store, args.set, args.rater or "cli", blind=args.blind, scale=scale, overlap=args.overlap,
                          owner=owner)
            done = run()
        else:
            kept = store.get_set(args.set)
            for flag, given, stored in (("--overlap", args.overlap, kept["overlap"]),
                                        ("--owner", owner, kept["owner"]), ("--blind", args.blind or None, kept["blind"])):
                if given is not None and given != stored:
                    print(f"warning: set '{args.set}' exists with {flag[2:]} {stored}; {flag} is used only when a "
                          "set is created", file=sys.stderr)
    finally:
        store.close()
    for problem in done.problems + done.invalid_scores:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"{done.message}.")
    print(f"set '{done.set_name}': {done.saved} caption(s) saved, {done.unchanged} already there, "
          f"{done.images} image(s), {done.without_image} caption(s) without a picture; "
          f"ratings: {done.ratings_saved} saved, {done.ratings_unchanged} already there, "
          f"{len(done.invalid_scores)} left out; gold scores: {done.gold_saved}; references: {done.references_saved}")
    if not done.imported:
        raise UserError("no caption could be imported: " + (" | ".join(done.problems[:5]) or done.message))
    return 0


def cmd_import_dataset(args: argparse.Namespace) -> int:
    from captioning.datasets import DatasetError
    from captioning.zoo import ModelCache, ZooError, select_entries
    from rating import intake, sets
    from rating.store import EvaluationSetNotFoundError

    if not Path(args.dataset).exists():
        raise UserError(f"dataset {args.dataset} does not exist; give a dataset folder or caption file "
                        "(COCO, Karpathy, Flickr8k or a folder with captions.csv: see python -m trainer.data inspect)")
    models = []
    if args.models is not None:
        try:
            entries = select_entries(args.zoo, args.models)
            cache = ModelCache(max_models=len(entries))
            models = [cache.get(path) for path in entries]
        except ZooError as e:
            raise UserError(str(e)) from None
    store = _store(args, create=True)
    try:
        with sets.undo_new_set_on_failure(store, args.set):
            try:
                store.get_set(args.set)
            except EvaluationSetNotFoundError:
                sets.open_set(store, args.set, "cli", preset=args.preset)
            try:
                done = intake.import_dataset_split(store, args.set, args.dataset, args.split, format=args.format,
                                                   limit=args.limit, seed=args.seed, models=models,
                                                   preset=args.preset, image_dir=args.display_dir)
            except DatasetError as e:
                raise UserError(str(e)) from None
            if not done.images:
                raise UserError(f"no image of the {done.split} split could be read: "
                                + (" | ".join(done.problems[:5]) or "the split is empty"))
    finally:
        store.close()
    for problem in done.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"set '{done.set_name}': {done.images} image(s) of the {done.split} split (of {done.dataset_images}), "
          f"{done.references_saved} reference caption(s) added")
    if done.captioned is not None:
        run = done.captioned
        print(f"captioned with {', '.join(run.models)} ({run.preset}): {run.saved} new caption(s), {run.kept} kept")
    else:
        print("no models given: caption these images in the app, or import captions (python -m rating import)")
    return 0


def _clean(value: Any) -> Any:
    """NaN (an interval of a model with no bootstrap) as JSON null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def cmd_results(args: argparse.Namespace) -> int:
    from rating import sets

    store = _store(args)
    try:
        found = sets.set_results(store, args.set)
    finally:
        store.close()
    table = sets.results_table(found.summary)
    if args.json:
        payload = {"set": args.set, "raters": found.raters, "ratings": len(found.ratings),
                   "summary": [{k: _clean(v) for k, v in row.items()} for row in table.to_dict("records")],
                   "agreement": {k: _clean(v) for k, v in found.agreement.items()}}
        print(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    elif args.csv:
        sys.stdout.write(table.to_csv(index=False))
    elif table.empty:
        print(f"set '{args.set}': no ratings yet")
    else:
        print(table.to_string(index=False))
        print(f"{len(found.ratings)} rating(s) by {len(found.raters)} rater(s): {', '.join(found.raters)}")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from rating import sets

    store = _store(args)
    try:
        found = sets.set_agreement(store, args.set, bertscore=not args.no_bertscore, meteor=not args.no_meteor)
    finally:
        store.close()
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=2, default=str))
        return 0
    low, high = found["scale"]
    print(f"set '{found['set']}' (scores {low}-{high}): {found['judgments']} judgment(s) of {found['captions']} "
          f"caption(s) with references; tokenizer {found['tokenizer']}"
          + (f"; {found['left_out']} caption(s) left out: their only reference is the caption itself"
             if found["left_out"] else ""))

    def cell(value: Any) -> str:
        return "   n/a" if value is None else f"{value:6.3f}"

    print(f"{'metric':<14} {'tau-c':>6} {'tau-b':>6}   (one row per judgment)   {'tau-c':>6} {'tau-b':>6}   "
          "(per-caption means)")
    for row in found["metrics"]:
        print(f"{row['metric']:<14} {cell(row['tau_c_judgments'])} {cell(row['tau_b_judgments'])}"
              f"{'':26}{cell(row['tau_c'])} {cell(row['kendall_tau'])}")
    print(f"CLIPScore: {found['clipscore']}")
    print("time: " + " | ".join(f"{k} {v:.2f} s" for k, v in found["seconds"].items()), file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rating import sets

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (it is created if needed)")
    store = _store(args)
    try:
        paths = sets.export_set(store, args.set, out)
    finally:
        store.close()
    for path in paths:
        print(path)
    return 0


def cmd_gold(args: argparse.Namespace) -> int:
    from rating import sets

    store = _store(args)
    try:
        changed = sets.mark_gold(store, args.set, args.from_rater)
        total = len(store.gold_scores(args.set))
    finally:
        store.close()
    print(f"{changed} caption(s) got {args.from_rater}'s score as their gold score; set {args.set} has {total} "
          "gold caption(s). Results now show each rater's agreement with them.")
    return 0


def cmd_sets(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        found = store.list_sets()
    finally:
        store.close()
    if not found:
        print(f"no evaluation sets in {store.location}")
    for entry in found:
        print(f"{entry['name']}\t{entry['images']} images\t{entry['captions']} captions\t"
              f"{entry['ratings']} ratings\t{entry['raters']} raters" + ("\tblind" if entry["blind"] else ""))
    return 0


def _read_password() -> str:
    """A password from stdin: asked twice without echo on a terminal, else the first line (a pipe, a file)."""
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
        if getpass.getpass("password again: ") != password:
            raise UserError("the two passwords differ; nothing was changed")
        return password
    line = sys.stdin.readline()
    if not line:
        raise UserError("no password on stdin; type it when asked, or pipe it in: "
                        "printf '%s\\n' \"$PASSWORD\" | python -m rating users ...")
    return line.removesuffix("\n").removesuffix("\r")


def cmd_users(args: argparse.Namespace) -> int:
    from rating import accounts

    store = _store(args, create=args.action == "add")
    try:
        if args.action == "add":
            accounts.check_role(args.role)  # a wrong role is said before the password is asked for
            user = accounts.add_user(store, args.name, args.role, _read_password())
            print(f"added {user.role} {user.name}")
        elif args.action == "list":
            found = accounts.list_users(store)
            if args.json:
                print(json.dumps(found, ensure_ascii=False, indent=2))
            elif not found:
                print(f"no users in {store.location}; add one with python -m rating users add NAME --role admin")
            else:
                for entry in found:
                    print(f"{entry['name']}\t{entry['role']}\t{entry['tokens']} token(s)\t"
                          f"since {entry['created_at']}")
        elif args.action == "passwd":
            accounts.set_password(store, args.name, _read_password())
            print(f"changed the password of {args.name.strip()}")
        elif args.action == "role":
            user = accounts.set_role(store, args.name, args.role)
            print(f"{user.name} is now {user.role}")
        elif args.action == "remove":
            tokens = accounts.remove_user(store, args.name)
            print(f"removed {args.name.strip()} and their {tokens} token(s)")
        elif args.action == "revoke":
            print(f"revoked {accounts.revoke_tokens(store, args.name)} token(s) of {args.name.strip()}")
        elif args.action == "token":
            token = accounts.create_token(store, args.name, args.label)
            print("This token is shown once; keep it secret. Send it with each request as the header "
                  "`Authorization: Bearer TOKEN`. Revoke the user's tokens with "
                  f"`python -m rating users revoke {args.name.strip()}`.", file=sys.stderr)
            print(token)
    finally:
        store.close()
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from rating.copying import copy_database
    from rating.database import DatabaseError, database_url, describe

    try:
        source, destination = database_url(args.src), database_url(args.dst)
    except ValueError as e:
        raise UserError(str(e)) from None
    if source.get_backend_name() == "sqlite" and source.database and not Path(source.database).is_file():
        raise UserError(f"no rating database at {source.database}; give the database to copy as SRC")
    try:
        counts = copy_database(args.src, args.dst)
    except DatabaseError as e:
        raise UserError(str(e)) from None
    for table, (rows, _) in counts.items():
        print(f"{table}: {rows} rows")
    print(f"copied {sum(rows for rows, _ in counts.values())} rows from {describe(source)} to {describe(destination)}; "
          "counts match")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rating.images import DEFAULT_DISPLAY_DIR

    parser = argparse.ArgumentParser(prog="python -m rating", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=DEFAULT_DB, help=f"rating database (default {DEFAULT_DB})")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("import", parents=[common], help="import captions (CSV or XLSX) into a set")
    p.add_argument("file", help="captions file: .csv or .xlsx with image_id, model_name, caption")
    p.add_argument("--set", required=True, help="evaluation set (created if new)")
    p.add_argument("--images", help="folder with the images the file names (optional)")
    p.add_argument("--rater", help="who gave the file's scores (when it has a score column and no rater column)")
    p.add_argument("--sheet", help="worksheet of an .xlsx file (default: the first)")
    p.add_argument("--scale", metavar="LOW-HIGH",
                   help="score scale of the file's scores, e.g. 1-4 (Flickr8k-Expert); a new set gets it, an "
                        "existing set must have it (default: the set's, 0-2 for a new set); scores outside it are "
                        "listed by row and left out")
    p.add_argument("--overlap", type=int, metavar="R",
                   help="a new set's raters per caption (default: everyone rates everything)")
    p.add_argument("--owner", metavar="USER", help="a new set's owner (default: --rater, else cli)")
    p.add_argument("--blind", action="store_true", help="a new set hides model names from its raters")
    p.add_argument("--display-dir", default=str(DEFAULT_DISPLAY_DIR),
                   help=f"where the grid's display copies go (default {DEFAULT_DISPLAY_DIR}, the app's default)")
    p.set_defaults(func=cmd_import)

    p = commands.add_parser("import-dataset", parents=[common],
                            help="a dataset split's images with their reference captions (optionally captioned)")
    p.add_argument("dataset", help="dataset folder or caption file (coco, karpathy, flickr8k or a captions folder)")
    p.add_argument("--set", required=True, help="evaluation set (created if new)")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--format", default="auto", help="auto (default), coco, karpathy, flickr8k or folder")
    p.add_argument("--limit", type=int, help="take this many images, drawn with --seed (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit draw (default 0)")
    p.add_argument("--models", help="caption the images with these zoo entries (comma-separated; '' for all)")
    p.add_argument("--zoo", default="model_zoo", help="zoo folder for --models (default model_zoo)")
    p.add_argument("--preset", default=None, help="decoding preset of a new set (default: consistent)")
    p.add_argument("--display-dir", default=str(DEFAULT_DISPLAY_DIR),
                   help=f"where the grid's display copies go (default {DEFAULT_DISPLAY_DIR}, the app's default)")
    p.set_defaults(func=cmd_import_dataset)

    p = commands.add_parser("results", parents=[common], help="per-model accuracy table and agreement")
    p.add_argument("--set", required=True)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="as JSON (table, agreement, raters)")
    fmt.add_argument("--csv", action="store_true", help="the table as CSV")
    p.set_defaults(func=cmd_results)

    p = commands.add_parser("agreement", parents=[common],
                            help="Kendall tau-c / tau-b of BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, BERTScore vs the raters")
    p.add_argument("--set", required=True)
    p.add_argument("--json", action="store_true", help="as JSON (every figure with its counts)")
    p.add_argument("--no-bertscore", action="store_true", help="leave BERTScore out (about 80 s per 1,000 captions "
                                                               "on two CPU cores)")
    p.add_argument("--no-meteor", action="store_true", help="leave METEOR out (its Java jar takes ~10 s to start)")
    p.set_defaults(func=cmd_agreement)

    p = commands.add_parser("export", parents=[common], help="write summary and raw ratings as CSV and XLSX")
    p.add_argument("--set", required=True)
    p.add_argument("--out", required=True, help="folder for the files (created if needed)")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("gold", parents=[common], help="make a rater's scores the set's gold scores")
    p.add_argument("--set", required=True)
    p.add_argument("--from-rater", required=True, help="the rater (e.g. the expert) whose scores become gold")
    p.set_defaults(func=cmd_gold)

    p = commands.add_parser("sets", parents=[common], help="list the evaluation sets with their counts")
    p.set_defaults(func=cmd_sets)

    from rating.schema import ROLES

    roles = "|".join(ROLES)
    users = commands.add_parser("users", help="team accounts: add, list, passwd, role, remove, token, revoke")
    actions = users.add_subparsers(dest="action", required=True)
    p = actions.add_parser("add", parents=[common], help="add a user; the password is read from stdin")
    p.add_argument("name")
    p.add_argument("--role", required=True, metavar=roles, help="rater rates; owner also creates and owns sets; "
                                                                "admin also manages users and every set")
    p = actions.add_parser("list", parents=[common], help="every user with role and token count")
    p.add_argument("--json", action="store_true", help="as JSON")
    p = actions.add_parser("passwd", parents=[common], help="set a user's password (read from stdin)")
    p.add_argument("name")
    p = actions.add_parser("role", parents=[common], help="change a user's role")
    p.add_argument("name")
    p.add_argument("role", metavar=roles)
    p = actions.add_parser("remove", parents=[common], help="remove a user and their API tokens")
    p.add_argument("name")
    p = actions.add_parser("revoke", parents=[common], help="revoke every API token of a user")
    p.add_argument("name")
    p = actions.add_parser("token", parents=[common], help="a new API token for a user, printed once")
    p.add_argument("name")
    p.add_argument("--label", help="what the token is for (e.g. ci, laptop)")
    users.set_defaults(func=cmd_users)

    p = commands.add_parser("copy", help="copy a whole rating database into a new, empty one (any backends)")
    p.add_argument("src", help="the database to copy: file path, sqlite:/// or postgresql:// URL")
    p.add_argument("dst", help="the new database: a new file, or an empty PostgreSQL database (createdb first)")
    p.set_defaults(func=cmd_copy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from captioning.images import ImageLoadError

    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, ImageLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
