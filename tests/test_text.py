"""app.text: normalisation, tokenizers, vocabulary, formatting, the lục bát checker."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.text import (EOL, UNK_ID, Vocabulary, check_verse, clean_words, couplet_pass_rates, exact_rhyme,
                      format_verse_line, rhyme_key, rhyme_shares, rhymes, rime, title_case, tokenize, tokenize_verse,
                      tone)

KIEU_OPENING = ["Trăm năm trong cõi người ta,", "Chữ tài chữ mệnh khéo là ghét nhau.",
                "Trải qua một cuộc bể dâu,", "Những điều trông thấy mà đau đớn lòng."]


def test_headline_cleaning_matches_the_lab():
    assert clean_words("G.O.P. Leadership Poised to Topple Obama’s Pillars") == [
        "gop", "leadership", "poised", "to", "topple", "obamas", "pillars"]
    assert clean_words("Angela Merkel, Russia’s Next Target") == ["angela", "merkel", "russias", "next", "target"]


@pytest.mark.parametrize("tokenizer", ["words", "syllables"])
def test_nfc_and_nfd_give_the_same_ids(tokenizer):
    text = "Trăm năm trong cõi người ta, chữ tài chữ mệnh"
    vocab = Vocabulary.build([tokenize(text, tokenizer)], tokenizer)
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    assert vocab.encode(tokenize(nfd, tokenizer)) == vocab.encode(tokenize(text, tokenizer))
    assert UNK_ID not in vocab.encode(tokenize(nfd, tokenizer))


def test_unknown_words_map_to_unk_and_round_trip():
    vocab = Vocabulary.build([["a", "b", "a"]], "words")
    assert vocab.encode(["a", "zzz"]) == [vocab.index["a"], UNK_ID]
    again = Vocabulary.from_json(vocab.to_json())
    assert again.tokens == vocab.tokens and again.decode(again.encode(["b"])) == ["b"]


def test_verse_stream_keeps_line_ends():
    toks = tokenize_verse(KIEU_OPENING[:2])
    assert toks.count(EOL) == 2 and toks[6] == EOL and len(toks) == 16


@pytest.mark.parametrize("syllable,expected", [("ta", "ngang"), ("người", "huyền"), ("cõi", "ngã"),
                                               ("mệnh", "nặng"), ("khéo", "sắc"), ("bể", "hỏi"),
                                               ("ươn", "ngang"), ("ĐÀN", "huyền")])
def test_tones(syllable, expected):
    assert tone(syllable) == expected
    assert tone(unicodedata.normalize("NFD", syllable)) == expected


@pytest.mark.parametrize("a,b", [("ta", "hoa"), ("nhau", "dâu"), ("thanh", "tình"), ("người", "ngoài"),
                                 ("quý", "khi"), ("gìn", "tin"), ("lòng", "chung")])
def test_rhymes(a, b):
    assert rhymes(a, b)


@pytest.mark.parametrize("a,b", [("ta", "đi"), ("nhau", "lòng"), ("năm", "đàn"), ("mưa", "mua")])
def test_not_rhymes(a, b):
    assert not rhymes(a, b)


def test_rime_strips_initials():
    assert rime("nghiêng") == "iêng" and rime("gìn") == "in" and rime("giữ") == "ư" and rime("quê") == "ê"
    assert rhyme_key("Người") == rhyme_key("người")


def test_checker_passes_the_opening_of_kieu():
    checks = check_verse(KIEU_OPENING)
    assert [c["kind"] for c in checks] == ["lục", "bát", "lục", "bát"]
    assert all(c["ok"] for c in checks), checks
    assert checks[0]["rhyme_ok"] is None and checks[1]["rhyme"]["other"] == "ta"
    assert checks[1]["tones"] == {"2": "huyền", "4": "nặng", "6": "huyền", "8": "ngang"}
    assert couplet_pass_rates(checks) == {"couplets": 2, "length": 1.0, "tone": 1.0, "rhyme": 1.0, "all": 1.0}


@pytest.mark.parametrize("a, b", [("là", "ta"), ("hoa", "xoa"), ("gìn", "tin"), ("quê", "bề"), ("Kiều", "chiều"),
                                  ("nghiêng", "tiếng")])
def test_exact_rhymes_share_the_whole_vần(a, b):
    assert exact_rhyme(a, b) and rhymes(a, b)


@pytest.mark.parametrize("a, b", [("nhau", "dâu"), ("hoa", "ta"), ("thanh", "tình"), ("vàng", "vương"),
                                  ("hồng", "phong")])
def test_near_rhymes_rhyme_but_not_exactly(a, b):
    assert rhymes(a, b) and not exact_rhyme(a, b)


def test_checker_says_which_rhymes_are_exact():
    checks = check_verse(KIEU_OPENING)
    # ta ~ là exact; nhau ~ dâu and dâu ~ đau near
    assert [c["rhyme"] and c["rhyme"]["exact"] for c in checks] == [None, True, False, False]
    shares = rhyme_shares(checks)
    assert shares["places"] == 3 and shares["rhyme"] == 1.0
    assert shares["exact"] == pytest.approx(1 / 3) and shares["near"] == pytest.approx(2 / 3)
    assert shares["luc6_bat6"] == {"places": 2, "rhyme": 1.0, "exact": 0.5, "near": 0.5}
    assert shares["bat8_luc6"] == {"places": 1, "rhyme": 1.0, "exact": 0.0, "near": 1.0}
    broken = check_verse(["Trăm năm trong cõi người ta", "Chữ tài chữ mệnh khéo lòng ghét nhau"])
    assert broken[1]["rhyme"]["exact"] is False  # no rhyme at all is not an exact one
    assert rhyme_shares(broken)["rhyme"] == 0.0 and rhyme_shares([])["places"] == 0


def test_checker_reports_each_failure():
    bad = check_verse(["Trăm năm trong cõi người", "Chữ tài chữ mệnh khéo là ghét nhau đi",
                       "Trải qua một cuộc bể sầu", "Những điều trông thấy mà đau đớn lòng"])
    assert not bad[0]["length_ok"] and bad[0]["syllables"] == 5 and 6 in bad[0]["tone_errors"]
    assert not bad[1]["length_ok"] and bad[1]["expected"] == 8
    # bát 6 and 8 both huyền / both ngang: "là ... nhau" fine; swap to "là ... hờ"
    same = check_verse(["Trăm năm trong cõi người ta", "Chữ tài chữ mệnh khéo là ghét hờ"])
    assert 8 in same[1]["tone_errors"]
    rhyme = check_verse(["Trăm năm trong cõi người ta", "Chữ tài chữ mệnh khéo lòng ghét nhau"])
    assert rhyme[1]["rhyme_ok"] is False and not rhyme[1]["ok"]
    tone4 = check_verse(["Trăm năm trong cây người ta"])
    assert tone4[0]["tone_errors"] == [4]


def test_formatting():
    assert title_case(["trump", "says", "gop"]) == "Trump Says Gop"
    assert format_verse_line(["trăm", "năm", "kiều"], {"kiều": "Kiều"}) == "Trăm năm Kiều"


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x1EFF), max_size=60))
@settings(max_examples=200, deadline=None)
def test_tokenizers_ignore_the_normal_form(text):
    for form in ("NFD", "NFKC"):
        other = unicodedata.normalize(form, text)
        if unicodedata.normalize("NFC", other) == unicodedata.normalize("NFC", text):
            assert clean_words(other) == clean_words(text)
    assert all(w == w.lower() and w.strip() == w and w for w in clean_words(text))
