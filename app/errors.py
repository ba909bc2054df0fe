"""The one exception type that preprocessing, tokenization and decoding raise on bad input."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Input a person can fix; carries the message in Vietnamese and English and an HTTP status."""

    def __init__(self, en: str, vi: str | None = None, status: int = 400):
        super().__init__(en)
        self.en = en
        self.vi = vi or en
        self.status = status

    def message(self, lang: str = "vi") -> str:
        """The message in `lang` ("vi" or "en")."""
        return self.vi if lang == "vi" else self.en
