"""The console's password form (/instructor/password): the signed-in instructor types the
current password and a new one twice. A new password signs every other browser out and revokes
every API token (`auth.change_password`, as `flask --app wsgi instructor passwd`); this browser
stays signed in. A wrong current password counts against the sign-in delays and the per-address
limit, so a borrowed session cannot guess the password faster than the sign-in form allows."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.security import check_password_hash

from app.errors import InvalidInput
from app.instructor import delays
from app.instructor.auth import change_password, not_a_post, start_session, wrong_password
from app.instructor.blueprints import bp
from app.records import db
from app.security import RouteLimit, limited


def check_current(password: str) -> None:
    """InvalidInput unless `password` is the signed-in instructor's (delays as on the sign-in form)."""
    delays.check_delay(current_user.name)
    if not check_password_hash(current_user.password_hash, password):
        delays.record_failure(current_user.name)
        raise wrong_password()


@bp.route("/password", methods=["GET", "POST"])
@limited(RouteLimit("RATELIMIT_LOGIN", exempt_when=not_a_post))
def change_password_form():
    """The form; a right current password and a new one typed twice set it."""
    error, status = None, 200
    if request.method == "POST":
        form = request.form
        try:
            check_current(form.get("current", ""))
            if form.get("new", "") != form.get("confirm", ""):
                raise InvalidInput("The two new passwords do not match.")
            user = current_user._get_current_object()
            revoked = change_password(user, form.get("new", ""))
            db.session.commit()
        except InvalidInput as exc:
            error, status = exc, exc.status
        else:
            start_session(user)  # the old session ended with the token; a fresh one for this browser
            flash(_("Password changed: your other sessions ended and %(n)s API token(s) were revoked.", n=revoked))
            return redirect(url_for("instructor.console"), 303)
    return render_template("instructor/password.html", error=error), status
