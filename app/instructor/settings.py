"""The console's settings, stored in the records database so every web worker and every queue
consumer sees the same values: the queue pause flag, the lab bench's limits, the access mode."""

from __future__ import annotations

from typing import Any

from app.records import Setting, db, utcnow

QUEUE_PAUSED = "queue_paused"
LAB_LIMITS = "lab_limits"
ACCESS_MODE = "access_mode"


def get_setting(key: str, default: Any = None) -> Any:
    """The stored value of `key`, or `default`."""
    row = db.session.get(Setting, key)
    return default if row is None or row.value is None else row.value


def set_setting(key: str, value: Any) -> None:
    """Store `value` (JSON) under `key`."""
    row = db.session.get(Setting, key)
    if row is None:
        db.session.add(Setting(key=key, value=value, updated_at=utcnow()))
    else:
        row.value, row.updated_at = value, utcnow()
    db.session.commit()


def queue_paused() -> bool:
    """True while the instructor holds the queue (a consumer starts no new run)."""
    return bool(get_setting(QUEUE_PAUSED, False))


def set_queue_paused(paused: bool) -> None:
    """Pause or resume the queue."""
    set_setting(QUEUE_PAUSED, bool(paused))


def limit_overrides() -> dict:
    """The lab bench's limits as the instructor set them ({} when never set)."""
    value = get_setting(LAB_LIMITS, {})
    return value if isinstance(value, dict) else {}


def set_limit_overrides(values: dict) -> None:
    """Store the lab bench's limits (field name -> int)."""
    set_setting(LAB_LIMITS, {k: int(v) for k, v in values.items()})


SUBMISSION_RULES = "submission_rules"
RULE_FIELDS = ("recurrent_only", "max_params", "max_file_mb", "target_accuracy", "target_perplexity")


def submission_rules(dataset: str) -> dict:
    """The instructor's rules for submissions to `dataset`: recurrent_only (bool), max_params (int),
    max_file_mb, target_accuracy (an image data set's) and target_perplexity (a text data set's,
    at most); a rule not set is None (False for recurrent_only)."""
    stored = get_setting(SUBMISSION_RULES, {})
    rules = stored.get(dataset) if isinstance(stored, dict) else None
    rules = rules if isinstance(rules, dict) else {}
    return {"recurrent_only": bool(rules.get("recurrent_only")), "max_params": rules.get("max_params"),
            "max_file_mb": rules.get("max_file_mb"), "target_accuracy": rules.get("target_accuracy"),
            "target_perplexity": rules.get("target_perplexity")}


def set_submission_rules(dataset: str, rules: dict) -> None:
    """Store the submission rules of `dataset` (keys of RULE_FIELDS, already checked)."""
    stored = get_setting(SUBMISSION_RULES, {})
    stored = dict(stored) if isinstance(stored, dict) else {}
    stored[dataset] = {k: rules.get(k) for k in RULE_FIELDS}
    set_setting(SUBMISSION_RULES, stored)
