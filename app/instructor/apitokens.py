"""The console's API tokens page (/instructor/tokens): the signed-in instructor's tokens with
when each was made, when it expires and when it was last used; a form that makes a new one
(shown once, in the answer itself, never in a cookie or a flash) for a chosen number of days;
and a revoke button per token. Behind `auth.require_instructor` like every console page."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from app.errors import InvalidInput
from app.instructor.auth import issue_token, token_state
from app.instructor.blueprints import bp
from app.records import ApiToken, db, utcnow


def own_tokens() -> list[ApiToken]:
    """The signed-in instructor's tokens, newest first."""
    return db.session.scalars(select(ApiToken).where(ApiToken.instructor_id == current_user.id)
                              .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).all()


def tokens_page(new_token: str | None = None, error: InvalidInput | None = None, status: int = 200):
    """The page, with a just-made token to copy or an error above the form."""
    cfg = current_app.config
    return render_template("instructor/tokens.html", tokens=own_tokens(), state=token_state, new_token=new_token,
                           error=error, default_days=cfg["API_TOKEN_DAYS"], max_days=cfg["API_TOKEN_MAX_DAYS"],
                           form=request.form), status


@bp.get("/tokens")
def api_tokens():
    """Every token of the signed-in instructor."""
    return tokens_page()


@bp.post("/tokens")
def create_api_token():
    """Make a token lasting the chosen number of days; the page shows it once."""
    try:
        token = issue_token(current_user, request.form.get("days"))
    except InvalidInput as exc:
        return tokens_page(error=exc, status=exc.status)
    return tokens_page(new_token=token, status=201)


@bp.post("/tokens/revoke")
def revoke_api_token():
    """Revoke one of the signed-in instructor's tokens (by its id)."""
    token_id = request.form.get("id", "")
    row = db.session.get(ApiToken, int(token_id)) if token_id.isascii() and token_id.isdigit() and len(token_id) < 10 else None
    if row is None or row.instructor_id != current_user.id:
        raise InvalidInput("No such API token of yours.", 404)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
    flash(_("Token %(prefix)s… is revoked.", prefix=row.prefix))
    return redirect(url_for("instructor.api_tokens"), 303)
