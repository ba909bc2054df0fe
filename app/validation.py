"""Helpers over pydantic's validation errors: the one error a person is shown first, and the
bounds and choices a field's schema declares (for the bilingual refusals built from them)."""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ValidationError


def first_error(exc: ValidationError) -> dict:
    """The error to report: an unknown field (the first by name) before any field's own error,
    then the first field's in the schema's declaration order."""
    errors = exc.errors(include_url=False)
    unknown = sorted((e for e in errors if e["type"] == "extra_forbidden"), key=lambda e: str(e["loc"][0]))
    return (unknown or errors)[0]


def field_bounds(schema: type[BaseModel], key: str) -> tuple:
    """(lo, hi) of a field declared with `Field(ge=lo, le=hi)`."""
    metadata = schema.model_fields[key].metadata
    return (next(m.ge for m in metadata if hasattr(m, "ge")), next(m.le for m in metadata if hasattr(m, "le")))


def field_choices(schema: type[BaseModel], key: str) -> tuple:
    """The values of a field declared as a `Literal[...]`."""
    return get_args(schema.model_fields[key].annotation)
