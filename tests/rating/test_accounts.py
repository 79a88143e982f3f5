"""Protects team accounts (`rating.accounts`) on both backends: a user signs in with their password and no other,
an unknown name and a wrong password both get None, the database holds an argon2id hash and never the password,
a password or role change takes effect, removing a user removes their tokens; API tokens are stored only as their
SHA-256, work until revoked, and a token changed by one character does not work; bad input (a taken name, a short
password, an unknown role) fails with a message saying what is allowed. And `python -m rating users ...`: the
password from stdin, the list as JSON, a token printed once that the store accepts, mistakes as one line, exit 2."""
from __future__ import annotations

import hashlib
import io
import json
import sys

import pytest
from sqlalchemy import select

from rating import accounts
from rating.accounts import User
from rating.cli import main
from rating.schema import ROLES, api_tokens, users
from rating.store import RatingStore

PASSWORD = "correct horse"


def _row(store: RatingStore, name: str):
    with store._read() as conn:
        return conn.execute(select(users).where(users.c.name == name)).first()


def _token_rows(store: RatingStore):
    with store._read() as conn:
        return conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()


def test_add_get_list_and_authenticate(store):
    assert accounts.add_user(store, "alice", "admin", PASSWORD) == User("alice", "admin")
    accounts.add_user(store, " bob ", "rater", "bob's password")  # the name is stripped, as every name is

    assert accounts.get_user(store, "alice") == User("alice", "admin")
    assert accounts.get_user(store, "bob") == User("bob", "rater")
    assert accounts.get_user(store, "carol") is None
    listed = accounts.list_users(store)
    assert [(u["name"], u["role"], u["tokens"]) for u in listed] == [("alice", "admin", 0), ("bob", "rater", 0)]
    assert all(u["created_at"].endswith("+00:00") for u in listed)

    alice = accounts.authenticate(store, "alice", PASSWORD)
    assert alice == User("alice", "admin") and alice.is_admin and alice.may_own
    bob = accounts.authenticate(store, "bob", "bob's password")
    assert bob == User("bob", "rater") and not bob.is_admin and not bob.may_own
    assert User("olga", "owner").may_own and not User("olga", "owner").is_admin
    assert accounts.authenticate(store, "alice", "bob's password") is None  # another user's password
    assert accounts.authenticate(store, "alice", PASSWORD + " ") is None
    assert accounts.authenticate(store, "alice", "") is None
    assert accounts.authenticate(store, "carol", PASSWORD) is None  # unknown user: None, not an error


def test_an_unknown_name_costs_a_hash_check_too(store, monkeypatch):
    # the answer for an unknown name must not come faster than for a wrong password (which would tell names apart)
    accounts.add_user(store, "alice", "rater", PASSWORD)
    from argon2 import PasswordHasher

    checked = []

    class Spy(PasswordHasher):
        def verify(self, hash, password):
            checked.append(hash)
            return super().verify(hash, password)

    monkeypatch.setattr(accounts, "_hasher", Spy())
    assert accounts.authenticate(store, "alice", "wrong password") is None
    assert accounts.authenticate(store, "nobody", "wrong password") is None
    assert accounts.authenticate(store, "nobody", PASSWORD) is None
    assert len(checked) == 3 and checked[0] == _row(store, "alice").password_hash
    assert checked[1] == checked[2] and checked[1].startswith("$argon2id$v=19$m=65536,t=3,p=4$")  # same cost


def test_only_an_argon2id_hash_is_stored(store):
    accounts.add_user(store, "alice", "rater", PASSWORD)
    stored = _row(store, "alice").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    accounts.add_user(store, "bob", "rater", PASSWORD)
    assert _row(store, "bob").password_hash != stored  # salted: the same password, another hash


def test_a_stale_hash_is_replaced_at_sign_in(store, monkeypatch):
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    monkeypatch.setattr(accounts, "_hasher", weak)
    accounts.add_user(store, "alice", "rater", PASSWORD)
    assert "m=8192,t=1,p=1" in _row(store, "alice").password_hash
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher())
    assert accounts.authenticate(store, "alice", PASSWORD) == User("alice", "rater")
    rehashed = _row(store, "alice").password_hash
    assert "m=65536,t=3,p=4" in rehashed
    assert accounts.authenticate(store, "alice", PASSWORD) == User("alice", "rater")
    assert _row(store, "alice").password_hash == rehashed  # current parameters: left alone


def test_password_and_role_changes(store):
    accounts.add_user(store, "alice", "rater", PASSWORD)
    accounts.set_password(store, "alice", "a new password")
    assert accounts.authenticate(store, "alice", PASSWORD) is None
    assert accounts.authenticate(store, "alice", "a new password") == User("alice", "rater")

    assert accounts.set_role(store, "alice", "owner") == User("alice", "owner")
    assert accounts.get_user(store, "alice") == User("alice", "owner")
    assert accounts.authenticate(store, "alice", "a new password").may_own

    with pytest.raises(ValueError, match=r"no user 'zed'; known users = \['alice'\]"):
        accounts.set_password(store, "zed", "long enough")
    with pytest.raises(ValueError, match="no user 'zed'"):
        accounts.set_role(store, "zed", "admin")
    with pytest.raises(ValueError, match="at least 8 characters"):
        accounts.set_password(store, "alice", "short")
    assert accounts.authenticate(store, "alice", "a new password") is not None  # the refused change changed nothing


def test_bad_input_is_refused_with_what_is_allowed(store):
    accounts.add_user(store, "alice", "rater", PASSWORD)
    with pytest.raises(ValueError) as taken:
        accounts.add_user(store, "alice", "admin", "another password")
    assert str(taken.value) == ("user 'alice' exists; change the password with "
                                "`python -m rating users passwd alice`")
    assert accounts.get_user(store, "alice") == User("alice", "rater")  # not promoted by the refused add
    assert accounts.authenticate(store, "alice", PASSWORD) is not None

    with pytest.raises(ValueError, match="password must be at least 8 characters long, got 7"):
        accounts.add_user(store, "bob", "rater", "1234567")
    with pytest.raises(ValueError) as role:
        accounts.add_user(store, "bob", "boss", PASSWORD)
    assert str(role.value) == f"role must be one of {list(ROLES)}, got 'boss'"
    with pytest.raises(ValueError, match="role must be one of"):
        accounts.set_role(store, "alice", "superuser")
    with pytest.raises(ValueError, match="user name must not be empty"):
        accounts.add_user(store, "  ", "rater", PASSWORD)
    assert [u["name"] for u in accounts.list_users(store)] == ["alice"]


def test_tokens(store):
    accounts.add_user(store, "alice", "owner", PASSWORD)
    accounts.add_user(store, "bob", "rater", "bob's password")
    token = accounts.create_token(store, "alice", label="ci")
    other = accounts.create_token(store, "bob")
    assert token.startswith("czt_") and len(token) > 40 and token != other

    rows = _token_rows(store)
    assert {(r.user_name, r.label) for r in rows} == {("alice", "ci"), ("bob", None)}
    assert {r.token_hash for r in rows} == {hashlib.sha256(t.encode()).hexdigest() for t in (token, other)}
    assert all(r.last_used_at is None for r in rows)  # only the hash is kept, and it was never used

    assert accounts.user_for_token(store, token) == User("alice", "owner")
    assert accounts.user_for_token(store, other) == User("bob", "rater")
    used = {r.user_name: r.last_used_at for r in _token_rows(store)}
    assert used["alice"] is not None and used["alice"].endswith("+00:00")
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert accounts.user_for_token(store, changed) is None
    assert accounts.user_for_token(store, "") is None and accounts.user_for_token(store, None) is None
    assert accounts.user_for_token(store, hashlib.sha256(token.encode()).hexdigest()) is None  # the hash is no token

    accounts.set_role(store, "alice", "admin")
    assert accounts.user_for_token(store, token) == User("alice", "admin")  # the token follows the user's role
    assert [u["tokens"] for u in accounts.list_users(store)] == [1, 1]
    second = accounts.create_token(store, "alice")
    assert accounts.revoke_tokens(store, "alice") == 2
    assert accounts.user_for_token(store, token) is None and accounts.user_for_token(store, second) is None
    assert accounts.user_for_token(store, other) == User("bob", "rater")  # another user's token still works
    assert accounts.revoke_tokens(store, "alice") == 0
    with pytest.raises(ValueError, match="no user 'zed'"):
        accounts.create_token(store, "zed")
    with pytest.raises(ValueError, match="no user 'zed'"):
        accounts.revoke_tokens(store, "zed")


def test_removing_a_user_removes_their_tokens(store):
    accounts.add_user(store, "alice", "rater", PASSWORD)
    accounts.add_user(store, "bob", "rater", "bob's password")
    token = accounts.create_token(store, "alice")
    accounts.create_token(store, "alice")
    kept = accounts.create_token(store, "bob")
    assert accounts.remove_user(store, "alice") == 2
    assert accounts.get_user(store, "alice") is None
    assert accounts.authenticate(store, "alice", PASSWORD) is None
    assert accounts.user_for_token(store, token) is None
    assert [r.user_name for r in _token_rows(store)] == ["bob"]
    assert accounts.user_for_token(store, kept) == User("bob", "rater")
    with pytest.raises(ValueError, match=r"no user 'alice'; known users = \['bob'\]"):
        accounts.remove_user(store, "alice")
    # the name is free again, with a new password and no old token
    accounts.add_user(store, "alice", "owner", "a fresh password")
    assert accounts.authenticate(store, "alice", "a fresh password") == User("alice", "owner")
    assert accounts.user_for_token(store, token) is None


# --- python -m rating users ----------------------------------------------------------------------------------------


def run(monkeypatch, capsys, args: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_users(db, monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, ["users", "add", "alice", "--role", "admin", "--db", db],
                         stdin=PASSWORD + "\nignored second line\n")
    assert (code, out, err) == (0, "added admin alice\n", "")
    code, out, _ = run(monkeypatch, capsys, ["users", "add", "bob", "--role", "rater", "--db", db],
                       stdin="no newline at the end")
    assert code == 0
    with RatingStore(db) as store:
        assert accounts.authenticate(store, "alice", PASSWORD) == User("alice", "admin")  # first line, no "\n"
        assert accounts.authenticate(store, "bob", "no newline at the end") == User("bob", "rater")

    code, out, err = run(monkeypatch, capsys, ["users", "token", "alice", "--label", "ci", "--db", db])
    assert code == 0
    token = out.strip()
    assert out == token + "\n" and token.startswith("czt_")  # stdout holds the token and nothing else
    assert "shown once" in err and "Authorization: Bearer TOKEN" in err and token not in err
    with RatingStore(db) as store:
        assert accounts.user_for_token(store, token) == User("alice", "admin")

    code, out, _ = run(monkeypatch, capsys, ["users", "list", "--json", "--db", db])
    listed = json.loads(out)
    assert code == 0 and [(u["name"], u["role"], u["tokens"]) for u in listed] == [("alice", "admin", 1),
                                                                                  ("bob", "rater", 0)]
    code, out, _ = run(monkeypatch, capsys, ["users", "list", "--db", db])
    assert code == 0 and out.splitlines()[0].startswith("alice\tadmin\t1 token(s)\tsince ")

    assert run(monkeypatch, capsys, ["users", "passwd", "bob", "--db", db], stdin="bob's new password\n")[0] == 0
    assert run(monkeypatch, capsys, ["users", "role", "bob", "owner", "--db", db])[1] == "bob is now owner\n"
    with RatingStore(db) as store:
        assert accounts.authenticate(store, "bob", "bob's new password") == User("bob", "owner")
    code, out, _ = run(monkeypatch, capsys, ["users", "remove", "alice", "--db", db])
    assert (code, out) == (0, "removed alice and their 1 token(s)\n")
    with RatingStore(db) as store:
        assert accounts.user_for_token(store, token) is None
        assert [u["name"] for u in accounts.list_users(store)] == ["bob"]


def test_cli_users_mistakes_are_one_line(db, monkeypatch, capsys):
    assert run(monkeypatch, capsys, ["users", "add", "alice", "--role", "admin", "--db", db], PASSWORD + "\n")[0] == 0
    cases = [
        (["users", "add", "alice", "--role", "rater"], PASSWORD, "user 'alice' exists; change the password with "
                                                                 "`python -m rating users passwd alice`"),
        (["users", "add", "bob", "--role", "rater"], "short\n", "at least 8 characters"),
        (["users", "add", "bob", "--role", "boss"], PASSWORD, "role must be one of ['rater', 'owner', 'admin']"),
        (["users", "add", "bob", "--role", "rater"], "", "no password on stdin"),
        (["users", "passwd", "zed"], PASSWORD, "no user 'zed'; known users = ['alice']"),
        (["users", "role", "alice", "king"], "", "role must be one of"),
        (["users", "remove", "zed"], "", "no user 'zed'"),
        (["users", "token", "zed"], "", "no user 'zed'"),
    ]
    for args, stdin, words in cases:
        code, out, err = run(monkeypatch, capsys, [*args, "--db", db], stdin)
        assert code == 2 and out == "", (args, out, err)
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and words in err, (args, err)
    with RatingStore(db) as store:
        assert [(u["name"], u["role"]) for u in accounts.list_users(store)] == [("alice", "admin")]
        assert accounts.authenticate(store, "alice", PASSWORD) is not None


def test_cli_password_on_a_terminal_is_asked_twice(tmp_path, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": answers.pop(0))
    db = str(tmp_path / "r.sqlite")
    monkeypatch.setattr(sys, "stdin", Terminal())
    answers[:] = [PASSWORD, PASSWORD + "x"]
    assert main(["users", "add", "alice", "--role", "rater", "--db", db]) == 2
    assert capsys.readouterr().err == "error: the two passwords differ; nothing was changed\n"
    answers[:] = [PASSWORD, PASSWORD]
    assert main(["users", "add", "alice", "--role", "rater", "--db", db]) == 0
    with RatingStore(db) as store:
        assert accounts.authenticate(store, "alice", PASSWORD) == User("alice", "rater")
