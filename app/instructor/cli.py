"""`flask --app wsgi instructor add|passwd|remove|token NAME`: instructor accounts on the server.

Passwords are read without echo (typed twice); tokens are printed once and stored hashed.
"""

from __future__ import annotations

import re

import click
from flask.cli import AppGroup
from sqlalchemy import delete, select
from werkzeug.security import generate_password_hash

from app.errors import InvalidInput
from app.instructor.auth import (change_password, check_password_strength, find_instructor, issue_token,
                                  revoke_tokens, token_state)
from app.records import ApiToken, Instructor, db, iso

instructor = AppGroup("instructor", help="Instructor accounts and API tokens.")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _password() -> str:
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password_strength(password)
    except InvalidInput as exc:
        raise click.ClickException(exc.en) from None
    return password


def _existing(name: str) -> Instructor:
    user = find_instructor(name)
    if user is None:
        raise click.ClickException(f"no instructor called {name!r}")
    return user


@instructor.command("add")
@click.argument("name")
def add(name: str) -> None:
    """Create instructor NAME (the password is asked for twice, without echo)."""
    if not NAME_RE.match(name):
        raise click.ClickException("NAME: 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit")
    if find_instructor(name) is not None:
        raise click.ClickException(f"instructor {name!r} already exists (use `instructor passwd {name}`)")
    db.session.add(Instructor(name=name, password_hash=generate_password_hash(_password())))
    db.session.commit()
    click.echo(f"instructor {name} created")


@instructor.command("passwd")
@click.argument("name")
def passwd(name: str) -> None:
    """Set a new password for NAME; every browser signed in as NAME is signed out and every API
    token of NAME is revoked."""
    user = _existing(name)
    revoked = change_password(user, _password())
    click.echo(f"password of {name} changed; its sessions ended and {revoked} API token(s) revoked")


@instructor.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def remove(name: str, yes: bool) -> None:
    """Delete instructor NAME and its API tokens."""
    user = _existing(name)
    if not yes:
        click.confirm(f"Remove instructor {name} and its API tokens?", abort=True)
    db.session.execute(delete(ApiToken).where(ApiToken.instructor_id == user.id))
    db.session.delete(user)
    db.session.commit()
    click.echo(f"instructor {name} removed")


@instructor.command("token")
@click.argument("name")
@click.option("--list", "list_", is_flag=True, help="list NAME's tokens (prefix, created, last used, revoked)")
@click.option("--revoke", metavar="PREFIX", help="revoke NAME's token(s) starting with PREFIX")
@click.option("--revoke-all", is_flag=True, help="revoke every token of NAME")
@click.option("--days", metavar="N", help="how many days the new token lasts (default API_TOKEN_DAYS)")
def token(name: str, list_: bool, revoke: str | None, revoke_all: bool, days: str | None) -> None:
    """Print a new API token for NAME (shown once; only its hash is kept), or list/revoke tokens."""
    user = _existing(name)
    if list_:
        rows = db.session.scalars(select(ApiToken).where(ApiToken.instructor_id == user.id)
                                  .order_by(ApiToken.created_at)).all()
        for r in rows:
            state = f"revoked {iso(r.revoked_at)}" if r.revoked_at else token_state(r)
            click.echo(f"{r.prefix}…  created {iso(r.created_at)}  expires {iso(r.expires_at)}  "
                       f"last used {iso(r.last_used_at) or '-'}  {state}")
        return
    if revoke or revoke_all:
        n = revoke_tokens(user, None if revoke_all else revoke)
        click.echo(f"{n} token(s) revoked")
        return
    try:
        click.echo(issue_token(user, days))
    except InvalidInput as exc:
        raise click.ClickException(exc.en) from None
