"""The instructor console's blueprints: its pages under /instructor and its token API under /api/v1."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("instructor", __name__, url_prefix="/instructor")
api_bp = Blueprint("instructor_api", __name__)
