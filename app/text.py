"""Text for the generators: NFC normalisation, the tokenizers, the vocabulary, formatting and the
lục bát checker. Pure Python: training, serving and tests cut and number words the same way.
Details: docs/DESIGN.md, "Text and lục bát (app/text.py)"."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

PAD, UNK, EOL = "<pad>", "<unk>", "<eol>"
SPECIALS = (PAD, UNK, EOL)  # ids 0, 1, 2 in every vocabulary
PAD_ID, UNK_ID, EOL_ID = 0, 1, 2
# Starts an auxiliary training sequence (an article's snippet, not a headline): read as the
# first input, never a target, never generated. Headlines start from EOL.
SNIPPET = "<snippet>"
DEFAULT_MIN_COUNT = 2  # tokens seen fewer times in the training split become <unk>
MAX_LINE_TOKENS = 100  # a corpus line is cut after this many tokens: one verse or headline per line
MARKERS = (SNIPPET,)

LUC, BAT = 6, 8  # syllables per line of a couplet

# Tone marks as combining characters after NFD (hats, breves and horns are vowel letters, not tones).
TONE_MARKS = {"\u0300": "huyền", "\u0301": "sắc", "\u0309": "hỏi", "\u0303": "ngã", "\u0323": "nặng"}
BANG = frozenset({"ngang", "huyền"})
INITIALS = ("ngh", "ng", "nh", "ch", "gh", "gi", "kh", "ph", "th", "tr", "qu",
            "b", "c", "d", "đ", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "x")
VOWELS = set("aăâeêioôơuưy")
CODAS = ("ng", "nh", "ch", "c", "m", "n", "p", "t", "i", "y", "o", "u")  # endings, longest first
VOWEL_GROUPS = {v: g for g, members in (("a", "a ă â ơ ư ươ ưa"), ("o", "o ô u uô ua oo"),
                                         ("e", "e ê i y iê ia yê ya")) for v in members.split()}


# ----------------------------------------------------------------------------- normalisation
def normalize(text: str) -> str:
    """Unicode NFC (Vietnamese typed on another system arrives decomposed)."""
    return unicodedata.normalize("NFC", text)


def _strip_punctuation(text: str) -> str:
    """Every punctuation (P*) and symbol (S*) character becomes a space... except inside words,
    where apostrophes and dots join (trump's -> trumps, g.o.p. -> gop) as the lab's cleaning does."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "PS":
            out.append("" if ch in "'’‘.`´" else " ")
        else:
            out.append(ch)
    return "".join(out)


def clean_words(text: str) -> list[str]:
    """Words of a headline: NFC, lower case, punctuation removed."""
    return _strip_punctuation(normalize(text).lower()).split()


def line_sequence(line: str, max_tokens: int = MAX_LINE_TOKENS) -> list[str]:
    """The training sequence of one line of a corpus (a verse, a headline): its words, at most
    `max_tokens` - 1 of them, then EOL; empty for a line without words."""
    words = clean_words(line)[:max_tokens - 1]
    return words + [EOL] if words else []


def split_lines(text: str) -> list[str]:
    """Non-empty lines of a text (any newline convention)."""
    return [ln for ln in normalize(text).splitlines() if ln.strip()]


def tokenize(text: str, tokenizer: str) -> list[str]:
    """Tokens of `text` for the task's tokenizer ("words" or "syllables"), without specials."""
    if tokenizer not in ("words", "syllables"):
        raise ValueError(f"unknown tokenizer {tokenizer!r}")
    return clean_words(text)


def tokenize_verse(lines: list[str]) -> list[str]:
    """Syllables of verse lines with EOL after each line (the training stream for Kiều)."""
    out: list[str] = []
    for line in lines:
        syl = clean_words(line)
        if syl:
            out.extend(syl)
            out.append(EOL)
    return out


# ----------------------------------------------------------------------------- vocabulary
@dataclass
class Vocabulary:
    """Token <-> id. Ids 0-2 are <pad>, <unk>, <eol>; unknown tokens map to <unk>.

    `display` maps a lower-case token to the form to print (e.g. "kiều" -> "Kiều"), learnt from
    how the training text writes it inside a line.
    """

    tokens: list[str]
    tokenizer: str
    display: dict[str, str] = field(default_factory=dict)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if tuple(self.tokens[:3]) != SPECIALS:
            raise ValueError("a vocabulary starts with <pad>, <unk>, <eol>")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, streams, tokenizer: str, min_count: int = 1, max_size: int | None = None,
              display: dict[str, str] | None = None, markers: tuple[str, ...] = ()) -> Vocabulary:
        """From token streams: most frequent first (ties alphabetical), so the ids are deterministic;
        `markers` (e.g. SNIPPET) come right after the specials, whatever their counts."""
        counts = Counter(t for s in streams for t in s if t not in SPECIALS and t not in markers)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size:
            kept = kept[: max_size - len(SPECIALS) - len(markers)]
        kept = list(markers) + kept
        kept_set = set(kept)
        return cls(list(SPECIALS) + kept, tokenizer,
                   {k: v for k, v in (display or {}).items() if k in kept_set})

    def encode(self, tokens) -> list[int]:
        """Ids of tokens; unknown ones become <unk>."""
        return [self.index.get(t, UNK_ID) for t in tokens]

    def decode(self, ids) -> list[str]:
        """Tokens of ids."""
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> str:
        """The vocab.json shipped beside model.keras."""
        return json.dumps({"tokenizer": self.tokenizer, "specials": list(SPECIALS), "tokens": self.tokens,
                           "display": self.display}, ensure_ascii=False, indent=0)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Inverse of `to_json`."""
        d = json.loads(text)
        return cls(list(d["tokens"]), d["tokenizer"], dict(d.get("display", {})))


def display_forms(lines: list[str]) -> dict[str, str]:
    """Capitalised forms that the text uses for a syllable most of the time away from a line
    start (names: Kiều, Kim, Thúy), so generated verses can print them the same way."""
    seen: dict[str, Counter] = {}
    for line in lines:
        for word in _strip_punctuation(normalize(line)).split()[1:]:
            seen.setdefault(word.lower(), Counter())[word] += 1
    out = {}
    for low, forms in seen.items():
        form, n = forms.most_common(1)[0]
        if form != low and n * 2 > sum(forms.values()):
            out[low] = form
    return out


# ----------------------------------------------------------------------------- formatting
def title_case(words: list[str]) -> str:
    """A headline as the lab prints it (`str.title()` on each word)."""
    return " ".join(w[:1].upper() + w[1:] for w in words)


def format_verse_line(syllables: list[str], display: dict[str, str] | None = None) -> str:
    """One verse line: known capitalised forms restored, first letter capitalised."""
    line = " ".join((display or {}).get(s, s) for s in syllables)
    return line[:1].upper() + line[1:]


# ----------------------------------------------------------------------------- tones and rhyme
def tone(syllable: str) -> str:
    """The tone of a syllable: ngang, huyền, sắc, hỏi, ngã or nặng."""
    for ch in unicodedata.normalize("NFD", syllable):
        if ch in TONE_MARKS:
            return TONE_MARKS[ch]
    return "ngang"


def strip_tone(syllable: str) -> str:
    """The syllable without its tone mark (vowel hats and horns kept), lower case, NFC."""
    nfd = unicodedata.normalize("NFD", syllable.lower())
    return unicodedata.normalize("NFC", "".join(ch for ch in nfd if ch not in TONE_MARKS))


def is_syllable(token: str) -> bool:
    """A word that can stand in a verse: letters only, with at least one vowel."""
    base = strip_tone(token)
    return base.isalpha() and any(ch in VOWELS for ch in base)


def rime(syllable: str) -> str:
    """The vần as written: tone removed, initial consonant stripped (gìn -> in, quý -> y)."""
    base = strip_tone(syllable)
    for ini in INITIALS:
        if base.startswith(ini) and len(base) > len(ini):
            rest = base[len(ini):]
            if ini == "gi" and rest[0] not in VOWELS:
                rest = base[1:]  # gìn = g + in
            return rest
    return base


def rime_parts(syllable: str) -> tuple[str, str]:
    """(main vowel, ending) of the vần, the glide o/u of oa, oe, uâ, uê, uy, uơ dropped."""
    r = rime(syllable)
    if len(r) > 1 and ((r[0] == "o" and r[1] in "aăe") or (r[0] == "u" and r[1] in "âêyơ")):
        r = r[1:]
    for coda in CODAS:
        if r.endswith(coda) and len(r) > len(coda):
            return r[: -len(coda)], {"y": "i", "o": "u"}.get(coda, coda)
    return r, ""


def rhyme_key(syllable: str) -> str:
    """Two syllables rhyme when their keys are equal: same ending, main vowel in the same group
    (any vowel before -nh, -ch or -i)."""
    nucleus, coda = rime_parts(syllable)
    if coda in ("nh", "ch", "i"):
        return "*" + coda
    return VOWEL_GROUPS.get(nucleus, nucleus) + coda


def rhymes(a: str, b: str) -> bool:
    """Whether two syllables rhyme under the project's rule (see the module docstring)."""
    return rhyme_key(a) == rhyme_key(b)


def exact_rhyme(a: str, b: str) -> bool:
    """Whether two syllables have the same vần (without initial consonant and tone): an exact
    rhyme, stricter than `rhymes`."""
    return rime(a) == rime(b)


def line_kind(index: int) -> int:
    """Expected length of verse line `index` (0-based): lục (6) on even lines, bát (8) on odd."""
    return LUC if index % 2 == 0 else BAT


def _at(syl: list[str], pos: int) -> str | None:
    return syl[pos - 1] if len(syl) >= pos else None


def check_line(syllables: list[str], index: int, previous: list[str] | None = None) -> dict:
    """Diagnostics of verse line `index` (0-based; even = lục, odd = bát) against the meter.

    `previous` is the line before it (None for the first line). Keys: kind, syllables, expected,
    length_ok, tones ({position: tone}), tone_errors ([positions]), tone_ok, rhyme ({..., ok,
    exact} or None when the line has no rhyme to keep), rhyme_ok (None when not applicable), ok.
    """
    n = line_kind(index)
    kind = "lục" if n == LUC else "bát"
    checked = (2, 4, 6) if n == LUC else (2, 4, 6, 8)
    tones = {p: tone(_at(syllables, p)) for p in checked if _at(syllables, p)}
    errors = [p for p in checked if p not in tones or (tones[p] in BANG) == (p == 4)]  # 4 is trắc, the others bằng
    if n == BAT and tones.get(6) in BANG and tones.get(8) in BANG and tones[6] == tones[8]:
        errors.append(8)  # 6 and 8 must be one huyền and one ngang
    rhyme = None
    if previous is not None:
        mine = _at(syllables, 6)
        theirs = _at(previous, 6 if n == BAT else BAT)
        rhyme = {"position": 6, "with_line": index - 1, "with_position": 6 if n == BAT else BAT,
                 "syllable": mine, "other": theirs,
                 "vần": rime(mine) if mine else None, "other_vần": rime(theirs) if theirs else None,
                 "ok": bool(mine and theirs and rhymes(mine, theirs))}
        rhyme["exact"] = bool(rhyme["ok"] and exact_rhyme(mine, theirs))
    length_ok = len(syllables) == n
    tone_ok = not errors
    rhyme_ok = None if rhyme is None else rhyme["ok"]
    return {"kind": kind, "syllables": len(syllables), "expected": n, "length_ok": length_ok,
            "tones": {str(p): t for p, t in tones.items()}, "tone_errors": sorted(set(errors)),
            "tone_ok": tone_ok, "rhyme": rhyme, "rhyme_ok": rhyme_ok,
            "ok": length_ok and tone_ok and rhyme_ok is not False}


def check_verse(lines) -> list[dict]:
    """Per-line diagnostics for verse lines (strings or syllable lists), the first being a lục line."""
    sylls = [clean_words(ln) if isinstance(ln, str) else list(ln) for ln in lines]
    return [check_line(s, i, sylls[i - 1] if i else None) for i, s in enumerate(sylls)]


def couplet_pass_rates(checks: list[dict]) -> dict:
    """Share of couplets (line pairs) whose length, tones and rhymes all pass."""
    pairs = [(checks[i], checks[i + 1]) for i in range(0, len(checks) - 1, 2)]
    if not pairs:
        return {"couplets": 0, "length": 0.0, "tone": 0.0, "rhyme": 0.0, "all": 0.0}
    n = len(pairs)
    length = sum(a["length_ok"] and b["length_ok"] for a, b in pairs)
    tone_ = sum(a["tone_ok"] and b["tone_ok"] for a, b in pairs)
    rhyme = sum(a["rhyme_ok"] is not False and b["rhyme_ok"] is not False for a, b in pairs)
    every = sum(a["ok"] and b["ok"] for a, b in pairs)
    return {"couplets": n, "length": length / n, "tone": tone_ / n, "rhyme": rhyme / n, "all": every / n}


def rhyme_shares(checks: list[dict]) -> dict:
    """Over the rhyme places of `check_verse` output: how many there are and the shares that
    rhyme, rhyme exactly, and rhyme only nearly; overall and per place ("luc6_bat6": a bát
    line's 6 with its lục's 6, "bat8_luc6": a lục line's 6 with the previous bát's 8)."""
    def shares(places: list[dict]) -> dict:
        n = len(places)
        ok = sum(r["ok"] for r in places)
        exact = sum(bool(r.get("exact")) for r in places)
        return {"places": n, "rhyme": ok / n if n else 0.0, "exact": exact / n if n else 0.0,
                "near": (ok - exact) / n if n else 0.0}

    rhymed = [c for c in checks if c.get("rhyme")]
    return shares([c["rhyme"] for c in rhymed]) | {
        "luc6_bat6": shares([c["rhyme"] for c in rhymed if c["expected"] == BAT]),
        "bat8_luc6": shares([c["rhyme"] for c in rhymed if c["expected"] == LUC])}
