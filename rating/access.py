"""Who may do what with an evaluation set: one small function per action, asked by every front end (the page,
the Gradio API, the REST server, `python -m rating`); no handler decides access on its own.

    may_see_names(store, name, who, admins)   -> whether `who` may see a blind set's model names
    may_manage(store, name, who, admins)      -> whether `who` may change what the results rest on (gold scores,
                                                 reviewed final scores)
    may_create_set(store, who, login)         -> whether `who` may create a new evaluation set
    admins_of(store, who, admins, login)      -> the admins a check for `who` counts: the --admin names, or with
                                                 accounts (--login) `who` alone when their role is admin
    names_refused(name) / managers_of(...)    -> what someone who may not see the names, or manage, is told

What a caller who may not see the names gets instead (column labels, "Caption A") is `rating.grid`.
"""

from __future__ import annotations

from collections.abc import Iterable

from rating.accounts import User, get_user
from rating.store import RatingStore


def may_see_names(store: RatingStore, set_name: str, who: str | None, admins: Iterable[str] = ()) -> bool:
    """The one rule for a blind set's model names (grid reveal, results, exports, API): True for a set that
    is not blind; for a blind set only when `who` is its owner or one of `admins`. A set from a database
    older than owners has no owner, so only an admin may see its names. Raises for an unknown set."""
    info = store.get_set(set_name)
    if not info["blind"]:
        return True
    if not who:
        return False
    return who in set(admins) or (info["owner"] is not None and who == info["owner"])


def may_manage(store: RatingStore, set_name: str, who: str | None, admins: Iterable[str] = ()) -> bool:
    """Who may change what a set's results rest on (e.g. mark gold scores): its owner and the `admins`,
    blind or not. Raises for an unknown set."""
    owner = store.get_set(set_name)["owner"]
    return bool(who) and (who in set(admins) or (owner is not None and who == owner))


def _account(store: RatingStore, who: str | None) -> User | None:
    """`who`'s account, or None for no name or no such account."""
    return get_user(store, who) if who else None


def may_create_set(store: RatingStore, who: str | None, *, login: bool) -> bool:
    """Who may create an evaluation set: anyone without accounts (the app without --login: names are typed,
    honour-based); with accounts, the users whose role may own sets (owner, admin)."""
    if not login:
        return True
    user = _account(store, who)
    return user is not None and user.may_own


def admins_of(store: RatingStore, who: str | None, admins: Iterable[str] = (), *, login: bool) -> tuple[str, ...]:
    """The admins to pass to `may_see_names` / `may_manage` when `who` asks. Without accounts: the app's --admin
    names. With accounts (--login): the accounts with role admin, i.e. `who` alone when theirs is admin (as the
    REST API decides), and nobody else; --admin names are not used then."""
    if not login:
        return tuple(admins)
    user = _account(store, who)
    return (user.name,) if user is not None and user.is_admin else ()


def managers_of(store: RatingStore, set_name: str, *, login: bool) -> str:
    """Who may manage (review, mark gold) a set, in words: "the owner of set 's' (alice) and the --admin users"."""
    owner = store.get_set(set_name)["owner"]
    admins = "the accounts with role admin" if login else "the --admin users"
    return (f"the owner of set '{set_name}' ({owner}) and {admins}" if owner
            else f"{admins} (set '{set_name}' has no owner)")


def names_refused(set_name: str, *, login: bool = False) -> str:
    """What a rater who is not the owner is told when they ask for a blind set's results or names (`login`: the
    app runs with accounts, where admins are the accounts with role admin, not --admin names)."""
    if login:
        return (f"Results of blind set '{set_name}' are for its owner and the admins; ask them (an admin gives an "
                "account that role with python -m rating users role NAME admin)")
    return (f"Results of blind set '{set_name}' are for its owner; ask them, or start the app with "
            "--admin YOUR_NAME")
