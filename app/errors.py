"""The app's exceptions: `InvalidInput` for bad input a person can fix (bilingual, with an HTTP
status), and `InsecureConfiguration` for a server that must refuse to start."""

from __future__ import annotations

from app.i18n import translate_to


class Msgid(str):
    """A msgid used as a field of another message: translated into that message's language."""


class InvalidInput(ValueError):
    """Input a person can fix: an English gettext msgid with its `%(name)s` fields, rendered in
    any language of the catalogue (the JSON errors carry Vietnamese and English), and an HTTP status.
    """

    def __init__(self, msgid: str, status: int = 400, **params):
        self.msgid, self.status, self.params = msgid, status, params
        super().__init__(self.en)

    def message(self, lang: str = "vi") -> str:
        """The message in `lang` (an English msgid is its own English text)."""
        params = {k: translate_to(lang, v) if isinstance(v, Msgid) else v for k, v in self.params.items()}
        return translate_to(lang, self.msgid, **params)

    @property
    def en(self) -> str:
        """The message in English."""
        return self.message("en")

    @property
    def vi(self) -> str:
        """The message in Vietnamese."""
        return self.message("vi")


class InsecureConfiguration(RuntimeError):
    """The server was asked to start with settings that are only safe on a developer's machine."""
