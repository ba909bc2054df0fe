"""Bad input: every awkward upload and text request gets a clear 4xx or the right answer.

Function level first (app.imaging, app.decoding, no Flask), then the same cases through the
Flask test client, in both languages: never a 500, never a stack trace.
"""

from __future__ import annotations

import io
import unicodedata

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image

from app.decoding import MAX_SEED_CHARS, generate, validate_request
from app.errors import InvalidInput
from app.i18n import translate_to
from app.imaging import bytes_to_array, decode_image
from app.tasks import BUILTIN_TASKS, IMAGE, KIEU, NYT_HEADLINES, TEXT
from app.textmodel import load_text_model

IMAGE_SPECS = [s for s in BUILTIN_TASKS.values() if s.kind == IMAGE]
TEXT_SPECS = [s for s in BUILTIN_TASKS.values() if s.kind == TEXT]
COLOUR_SPECS = [s for s in IMAGE_SPECS if s.preprocess == "plain"]
DRAWING_SPECS = [s for s in IMAGE_SPECS if s.preprocess != "plain"]


def assert_bilingual(err: InvalidInput, status: int) -> None:
    """A refusal a person can act on, in English and in Vietnamese."""
    assert err.status == status
    assert err.en.strip() and err.vi.strip() and err.en != err.vi
    assert "Traceback" not in err.en and "Traceback" not in err.vi


# ----------------------------------------------------------------------------- uploads, refused
@pytest.mark.parametrize("spec", IMAGE_SPECS, ids=lambda s: s.slug)
def test_refused_upload_raises_invalid_input(refused_case, spec):
    data, _, status = refused_case
    with pytest.raises(InvalidInput) as info:
        bytes_to_array(data, spec)
    assert_bilingual(info.value, status)


def test_fifty_megabytes_of_garbage_is_refused_not_crashed():
    # Over HTTP MAX_CONTENT_LENGTH answers 413 first; the function alone must still refuse it cleanly.
    with pytest.raises(InvalidInput) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + bytes(50 * 1024 * 1024))
    assert_bilingual(info.value, 400)


def test_bomb_is_an_error_not_a_warning(uploads, recwarn):
    with pytest.raises(InvalidInput):
        decode_image(uploads.png_just_over_limit())
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


# ----------------------------------------------------------------------------- uploads, odd but valid
def test_animated_gif_gives_its_first_frame(uploads):
    data, first = uploads.animated_gif()
    np.testing.assert_array_equal(np.asarray(decode_image(data).convert("RGB")), first)
    spec = BUILTIN_TASKS["cifar10"]
    png_of_first = uploads.encode(Image.fromarray(first), "PNG")
    np.testing.assert_array_equal(bytes_to_array(data, spec), bytes_to_array(png_of_first, spec))


def test_cmyk_jpeg_keeps_its_colours(uploads):
    arr = np.asarray(decode_image(uploads.cmyk_jpeg()), dtype=np.int16)
    assert arr.shape == (32, 32, 3)
    left, right = arr[:, 2:14].reshape(-1, 3).mean(0), arr[:, 18:30].reshape(-1, 3).mean(0)
    assert left[0] > 200 and left[1] < 60 and left[2] < 60  # red stays red (not inverted)
    assert right[2] > 200 and right[0] < 60 and right[1] < 60  # blue stays blue


def test_sixteen_bit_png_keeps_the_full_ramp(uploads):
    img = decode_image(uploads.png16())
    assert img.mode == "L"
    row = np.asarray(img)[0].astype(int)
    assert row[0] <= 1 and row[-1] >= 254  # scaled from 0–65535, not clipped at 255
    assert np.all(np.diff(row) >= 0)


def test_palette_png_transparency_becomes_white(uploads):
    arr = np.asarray(decode_image(uploads.palette_transparent()).convert("RGB"))
    assert (arr[0, 0] == 255).all() and (arr[16, 16] == 0).all()
    digit = bytes_to_array(uploads.palette_transparent(), BUILTIN_TASKS["mnist"])
    assert digit.max() > 200 and digit[0, 0, 0] == 0  # dark square read as ink on a light page


@pytest.mark.parametrize("spec", COLOUR_SPECS, ids=lambda s: s.slug)
@pytest.mark.parametrize("size", [(1, 1), (10, 320), (320, 10)], ids=["1x1", "320x10", "10x320"])
def test_extreme_sizes_give_the_model_input(uploads, spec, size):
    h, w = size
    arr = bytes_to_array(uploads.encode(uploads.noise_rgb(h, w), "PNG"), spec)
    assert arr.shape == spec.input_shape and arr.dtype == np.uint8


@pytest.mark.parametrize("spec", DRAWING_SPECS, ids=lambda s: s.slug)
@pytest.mark.parametrize("size", [(10, 320), (320, 10)], ids=["320x10", "10x320"])
def test_extreme_drawings_give_the_model_input(uploads, spec, size):
    arr = bytes_to_array(uploads.encode(uploads.digit_like(*size), "PNG"), spec)
    assert arr.shape == spec.input_shape and arr.max() > 100  # the stroke survives


@pytest.mark.parametrize("spec", DRAWING_SPECS, ids=lambda s: s.slug)
def test_one_pixel_drawing_is_blank(uploads, spec):
    with pytest.raises(InvalidInput) as info:
        bytes_to_array(uploads.encode(Image.new("L", (1, 1), 255), "PNG"), spec)
    assert_bilingual(info.value, 400)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(uploads, orientation, fmt):
    upright = uploads.asymmetric()
    got = np.asarray(decode_image(uploads.with_orientation(upright, orientation, fmt)).convert("RGB"), dtype=np.int16)
    assert got.shape == upright.shape
    # Of the eight ways to lay the picture down, the upright one must be by far the closest.
    img = Image.fromarray(upright)
    candidates = {o: np.asarray(img if m is None else img.transpose(m), dtype=np.int16)
                  for o, m in uploads.ORIENTATION_TO_UPRIGHT.items()}
    errors = {o: np.abs(c - got).mean() for o, c in candidates.items() if c.shape == got.shape}
    assert min(errors, key=errors.get) == 1
    assert errors[1] < (0.5 if fmt == "PNG" else 8.0)


# ----------------------------------------------------------------------------- text requests
@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    from training.textgen import write_tiny_text_model

    d = tmp_path_factory.mktemp("textmodels")
    return {spec.slug: load_text_model(write_tiny_text_model(d, spec), spec) for spec in TEXT_SPECS}


EMPTY_SEEDS = ("no seed", "empty seed", "blank seed")
BAD_TEXT = {
    "no seed": {},
    "empty seed": {"seed": ""},
    "blank seed": {"seed": " \t\n "},
    "only punctuation": {"seed": "?!… — «»,.;:"},
    "only emoji": {"seed": "😀🎉🇻🇳"},
    "10,000 characters": {"seed": "chữ " * 2500},
    "seed is a number": {"seed": 42},
    "seed is a list": {"seed": ["a", "b"]},
    "length 0": {"seed": "ok", "length": 0},
    "length too big": {"seed": "ok", "length": 10_000},
    "length negative": {"seed": "ok", "length": -3},
    "length text": {"seed": "ok", "length": "many"},
    "length fraction": {"seed": "ok", "length": 2.5},
    "length list": {"seed": "ok", "length": [3]},
    "length bool": {"seed": "ok", "length": True},
    "strategy unknown": {"seed": "ok", "strategy": "magic"},
    "strategy number": {"seed": "ok", "strategy": 3},
    "temperature 0": {"seed": "ok", "temperature": 0},
    "temperature too high": {"seed": "ok", "temperature": 1e9},
    "temperature nan": {"seed": "ok", "temperature": "nan"},
    "temperature inf": {"seed": "ok", "temperature": float("inf")},
    "temperature dict": {"seed": "ok", "temperature": {"x": 1}},
    "temperature past float range": {"seed": "ok", "temperature": 10**400},
    "top_p past float range": {"seed": "ok", "top_p": -(10**400)},
    "top_k 0": {"seed": "ok", "top_k": 0},
    "top_k too big": {"seed": "ok", "top_k": 10**9},
    "top_k text": {"seed": "ok", "top_k": "ten"},
    "top_p 0": {"seed": "ok", "top_p": 0},
    "top_p above 1": {"seed": "ok", "top_p": 1.5},
    "top_p text": {"seed": "ok", "top_p": "most"},
    "beam_width 0": {"seed": "ok", "beam_width": 0},
    "beam_width too big": {"seed": "ok", "beam_width": 1000},
    "random_seed negative": {"seed": "ok", "random_seed": -1},
    "random_seed too big": {"seed": "ok", "random_seed": 2**64},
    "random_seed text": {"seed": "ok", "random_seed": "abc"},
}


def test_ten_thousand_characters_is_over_the_limit():
    assert len(BAD_TEXT["10,000 characters"]["seed"]) == 10_000 > MAX_SEED_CHARS


@pytest.mark.parametrize(("spec", "case"), [  # verse starts an empty seed from the poem (tests/test_text_seeds.py)
    pytest.param(spec, case, id=f"{case}-{spec.slug}") for spec in TEXT_SPECS for case in sorted(BAD_TEXT)
    if not (spec.default_seed and case in EMPTY_SEEDS)])
def test_bad_text_request_raises_invalid_input(case, spec):
    with pytest.raises(InvalidInput) as info:
        validate_request(spec, BAD_TEXT[case])
    assert_bilingual(info.value, 400)


@pytest.mark.parametrize("body", [None, [], "seed", 3, ["seed", "ok"]])
def test_request_that_is_not_an_object(body):
    with pytest.raises(InvalidInput) as info:
        validate_request(NYT_HEADLINES, body)
    assert_bilingual(info.value, 400)


ODD_SEEDS = {
    "unknown words": "zxqv blorptastic quuxify",
    "NFD Vietnamese": unicodedata.normalize("NFD", "Trăm năm trong cõi người ta"),
    "control characters": "trăm\x00năm\x07 trong\x1b cõi\u200b người",
    "emoji between words": "trăm 😀 năm 🎉 trong",
    "right-to-left mark": "\u202etrăm năm",
    "one letter": "a",
}


@pytest.mark.parametrize("spec", TEXT_SPECS, ids=lambda s: s.slug)
@pytest.mark.parametrize("case", sorted(ODD_SEEDS))
def test_odd_seed_generates_the_requested_length(case, spec, text_models):
    req = validate_request(spec, {"seed": ODD_SEEDS[case], "length": 2, "random_seed": 3})
    out = generate(text_models[spec.slug], req)
    assert isinstance(out["text"], str) and out["text"].strip()
    if spec.tokenizer == "words":
        assert out["tokens"] == 2
    else:
        assert all(check["length_ok"] for check in out["checks"])


def test_nfd_seed_equals_nfc_seed(text_models):
    nfc = "Trăm năm trong cõi người ta"
    results = [generate(text_models["kieu"], validate_request(KIEU, {"seed": s, "length": 1, "random_seed": 7}))
               for s in (nfc, unicodedata.normalize("NFD", nfc))]
    assert results[0]["text"] == results[1]["text"]


# ----------------------------------------------------------------------------- through the app
LANGS = ("vi", "en")


def upload(data: bytes, name: str) -> dict:
    return {"file": (io.BytesIO(data), name)}


def expected_message(call, lang: str) -> tuple[int, str]:
    """The status and message the function itself gives, in `lang`."""
    with pytest.raises(InvalidInput) as info:
        call()
    return info.value.status, info.value.message(lang)


def shows(resp, message: str) -> bool:
    """Whether the JSON error or the HTML page carries `message`."""
    if resp.is_json:
        return resp.get_json()["error"] == message
    return str(escape(message)) in resp.get_data(as_text=True)


@pytest.mark.parametrize("lang", LANGS)
def test_refused_upload_through_the_app(client, refused_case, lang):
    data, name, status = refused_case
    want_status, message = expected_message(lambda: bytes_to_array(data, BUILTIN_TASKS["mnist"]), lang)
    assert want_status == status
    api = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}", data=upload(data, name))
    assert api.status_code == status and api.get_json()["error"] == message
    page = client.post(f"/tasks/mnist?lang={lang}", data=upload(data, name), content_type="multipart/form-data")
    assert page.status_code == status and str(escape(message)) in page.get_data(as_text=True)
    assert "Traceback" not in page.get_data(as_text=True)


@pytest.mark.parametrize("lang", LANGS)
def test_no_file_and_fifty_megabytes_through_the_app(client, lang):
    i = LANGS.index(lang)
    for path in ("/api/v1/tasks/mnist/predict", "/tasks/mnist"):
        none = client.post(f"{path}?lang={lang}", data={}, content_type="multipart/form-data")
        assert none.status_code == 400 and shows(none, translate_to(lang, "No picture was chosen."))
        big = client.post(f"{path}?lang={lang}", data=upload(bytes(50 * 1024 * 1024), "huge.png"))
        mb = client.application.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
        assert big.status_code == 413
        assert shows(big, translate_to(lang, "The file is too large: the limit is %(mb)s MB.", mb=mb))


@pytest.mark.parametrize("lang", LANGS)
def test_odd_but_valid_uploads_through_the_app(uploads, client, lang):
    """The app answers exactly what the function does: the model's answer, or its clear 4xx."""
    gif, _ = uploads.animated_gif()
    cases = [(gif, "a.gif"), (uploads.cmyk_jpeg(), "c.jpg"), (uploads.png16(), "d.png"), (uploads.palette_transparent(), "p.png"),
             (uploads.with_orientation(uploads.asymmetric(), 6, "JPEG"), "e.jpg"), (uploads.encode(uploads.digit_like(10, 320), "PNG"), "w.png"),
             (uploads.encode(uploads.digit_like(320, 10), "PNG"), "t.png"), (uploads.encode(uploads.digit_like(10, 10000), "PNG"), "l.png"), (uploads.encode(Image.new("L", (1, 1), 255), "PNG"), "1.png")]
    digit = uploads.digit_like(40, 40)  # the same odd formats carrying a drawing, so they reach the model
    blank = Image.new("L", (40, 40), 255)
    cases += [(uploads.encode(digit, "GIF", save_all=True, append_images=[blank]), "digit.gif"),
              (uploads.encode(digit.convert("RGB").convert("CMYK"), "JPEG"), "digit-cmyk.jpg"),
              (uploads.encode(Image.fromarray(np.asarray(digit).astype(np.uint16) * 257), "PNG"), "digit16.png")]
    answered = 0
    for data, name in cases:
        resp = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}", data=upload(data, name))
        try:
            bytes_to_array(data, BUILTIN_TASKS["mnist"])
        except InvalidInput as err:
            assert resp.status_code == err.status and shows(resp, err.message(lang)), name
            continue
        assert resp.status_code == 200 and len(resp.get_json()["top"]) >= 1, name
        answered += 1
    assert answered >= 6


@pytest.mark.parametrize("lang", LANGS)
def test_unknown_task_is_404_everywhere(uploads, client, lang):
    for method, path in [("GET", "/tasks/nope"), ("POST", "/tasks/nope"), ("GET", "/tasks/nope/card"),
                         ("POST", "/api/v1/tasks/nope/predict"), ("POST", "/api/v1/tasks/nope/generate"),
                         ("GET", "/tasks/..%2F..%2Fetc/card")]:
        resp = client.open(f"{path}?lang={lang}", method=method, data=upload(uploads.encode(uploads.noise_rgb(), "PNG"), "x.png"))
        assert resp.status_code == 404, path
        assert "Traceback" not in resp.get_data(as_text=True)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("spec", TEXT_SPECS, ids=lambda s: s.slug)
def test_text_generate_route_given_an_image(uploads, text_client, spec, lang):
    png = uploads.encode(uploads.noise_rgb(), "PNG")
    api = text_client.post(f"/api/v1/tasks/{spec.slug}/generate?lang={lang}", data=upload(png, "x.png"))
    assert api.status_code == 400 and api.get_json()["error"] == translate_to(lang, "The request body must be valid JSON.")
    page = text_client.post(f"/tasks/{spec.slug}?lang={lang}", data=upload(png, "x.png"), content_type="multipart/form-data")
    assert page.status_code == 400
    predict = text_client.post(f"/api/v1/tasks/{spec.slug}/predict?lang={lang}", data=upload(png, "x.png"))
    assert predict.status_code == 400 and predict.get_json()["error"]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("stream", ["0", "1"])
@pytest.mark.parametrize("body", ['{"seed": "trăm năm",', "seed=trăm", "[1, 2", "\xff\xfe", "null", "[]", '"seed"',
                                  "[" * 500 + "]" * 500, "[" * 100_000 + "]" * 100_000, '{"seed":' * 50_000 + "1" + "}" * 50_000,
                                  '{"seed": "tr\\ud800m n\\udfffm"}'],
                         ids=["cut", "form", "open", "bytes", "null", "list", "string", "deep", "deeper", "deep-object", "surrogates"])
def test_malformed_json(text_client, body, lang, stream):
    resp = text_client.post(f"/api/v1/tasks/nyt_headlines/generate?lang={lang}&stream={stream}",
                            data=body.encode("utf-8", "surrogateescape"), content_type="application/json")
    assert resp.status_code == 400 and resp.is_json
    error = resp.get_json()
    assert error["error"] == error[f"error_{lang}"] and error["error_en"] != error["error_vi"]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("spec", TEXT_SPECS, ids=lambda s: s.slug)
def test_bad_text_requests_through_the_api(text_client, spec, lang):
    for case, params in BAD_TEXT.items():
        if spec.default_seed and case in EMPTY_SEEDS:
            continue  # verse starts from the poem's opening (tests/test_text_seeds.py)
        _, message = expected_message(lambda: validate_request(spec, params), lang)
        resp = text_client.post(f"/api/v1/tasks/{spec.slug}/generate?lang={lang}", json=params)
        assert resp.status_code == 400 and resp.get_json()["error"] == message, case


@pytest.mark.parametrize("lang", LANGS)
def test_bad_text_requests_through_the_html_form(text_client, lang):
    for params in ({"seed": ""}, {"seed": "?!…"}, {"seed": "chữ " * 2500}, {"seed": "ok", "length": "0"},
                   {"seed": "ok", "temperature": "nan"}, {"seed": "ok", "top_p": "2"}, {"seed": "ok", "strategy": "x"}):
        _, message = expected_message(lambda: validate_request(NYT_HEADLINES, params), lang)
        resp = text_client.post(f"/tasks/nyt_headlines?lang={lang}", data=params)
        assert resp.status_code == 400 and str(escape(message)) in resp.get_data(as_text=True), params


@pytest.mark.parametrize("spec", TEXT_SPECS, ids=lambda s: s.slug)
def test_odd_seeds_through_the_api(text_client, spec):
    for case, seed in ODD_SEEDS.items():
        resp = text_client.post(f"/api/v1/tasks/{spec.slug}/generate", json={"seed": seed, "length": 1, "random_seed": 2})
        assert resp.status_code == 200 and resp.get_json()["text"].strip(), case


@pytest.mark.parametrize("spec", [BUILTIN_TASKS["cifar10"], BUILTIN_TASKS["mnist"]], ids=lambda s: s.slug)
def test_big_jpeg_decoded_at_reduced_scale_gives_the_same_input(uploads, spec):
    """A 4800×3200 photo is decoded by libjpeg at reduced scale (memory); the model input matches
    the full decode of the same pixels."""
    rng = np.random.default_rng(3)
    tint = np.asarray(Image.fromarray(rng.integers(180, 255, (12, 18, 3), dtype=np.uint8)).resize((4800, 3200)))
    arr = tint.copy()  # light, unevenly tinted paper...
    arr[1000:2200, 2000:2500] = 20  # ...with a dark stroke (a drawing for the digit tasks)
    jpeg = uploads.encode(Image.fromarray(arr), "JPEG", quality=92)
    full = Image.open(io.BytesIO(jpeg))
    full.load()  # every pixel, then halved by hand (a PNG of the full size is over the pixel limit)
    reference = bytes_to_array(uploads.encode(full.reduce(2), "PNG"), spec).astype(int)
    got = bytes_to_array(jpeg, spec).astype(int)
    assert got.shape == reference.shape and np.abs(got - reference).mean() < 3.0
    rotated = bytes_to_array(uploads.encode(Image.fromarray(arr).transpose(Image.Transpose.ROTATE_90), "JPEG",
                                       exif=_orientation_exif(6)), spec)
    assert rotated.shape == spec.input_shape


def _orientation_exif(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value  # the EXIF Orientation tag
    return exif.tobytes()


def _wide_page(uploads, mode: str) -> tuple[bytes, Image.Image]:
    """A 4400×700 page with a dark stroke in `mode` (over four times the working size, so it is
    reduced early), and the same page flattened at full size by hand: the reference."""
    grey = np.full((700, 4400), 230, np.uint8)
    grey[200:500, 1800:2300] = 25
    base = Image.fromarray(grey)
    if mode == "RGBA":
        alpha = np.full(grey.shape, 255, np.uint8)
        alpha[:, :300] = 0  # a transparent margin composited onto white
        img = Image.merge("RGBA", [base, base, base, Image.fromarray(alpha)])
        ref = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
    elif mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16) * 257)
        ref = base
    elif mode == "P":
        img = base.convert("RGB").quantize(4)
        ref = img.convert("RGB")
    elif mode == "1":
        img = base.point(lambda v: 255 if v > 128 else 0).convert("1")
        ref = img.convert("L")
    else:
        img, ref = base.convert(mode), base.convert(mode).convert("RGB")
    return uploads.encode(img, "JPEG" if mode == "CMYK" else "PNG", **({"quality": 95} if mode == "CMYK" else {})), ref


@pytest.mark.parametrize("spec", [BUILTIN_TASKS["cifar10"], BUILTIN_TASKS["mnist"]], ids=lambda s: s.slug)
@pytest.mark.parametrize("mode", ["RGBA", "I;16", "P", "1", "CMYK", "RGB", "L"])
def test_big_images_reduced_early_give_the_same_input(uploads, mode, spec):
    data, reference = _wide_page(uploads, mode)
    got = bytes_to_array(data, spec).astype(int)
    want = bytes_to_array(uploads.encode(reference, "PNG"), spec).astype(int)
    assert got.shape == want.shape == spec.input_shape
    assert np.abs(got - want).mean() < 4.0


# ----------------------------------------------------------------------------- decoders Pillow must never run
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
       b"newpath 2 2 moveto 14 14 lineto stroke showpage\n%%EOF\n")


@pytest.fixture
def stand_in_gs(tmp_path, monkeypatch):
    """A `gs` first on PATH that records each call (and fails), with Pillow made to look it up
    again; yields the record file, which exists only once the stand-in has run."""
    from PIL import EpsImagePlugin

    bindir, record = tmp_path / "bin", tmp_path / "gs-calls.txt"
    bindir.mkdir()
    gs = bindir / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n[ "$1" = "--version" ] && echo 10.0 && exit 0\nexit 1\n')
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return record


def test_plain_pillow_runs_the_stand_in_gs_on_eps(stand_in_gs):
    """The control for the tests below: without the allow-list, these bytes run `gs`."""
    with pytest.raises(Exception):
        Image.open(io.BytesIO(EPS)).load()
    assert stand_in_gs.is_file()


@pytest.mark.parametrize("lang", LANGS)
def test_eps_upload_never_runs_ghostscript(stand_in_gs, client, lang):
    with pytest.raises(InvalidInput) as info:
        decode_image(EPS)
    assert_bilingual(info.value, 400)
    for path in ("/api/v1/tasks/mnist/predict", "/tasks/mnist"):
        resp = client.post(f"{path}?lang={lang}", data=upload(EPS, "kitten.png"), content_type="multipart/form-data")
        assert resp.status_code == 400 and shows(resp, info.value.message(lang)), path
    assert not stand_in_gs.exists()


def test_eps_in_an_instructors_folder_is_skipped_without_ghostscript(uploads, stand_in_gs, tmp_path):
    from training.imagefolder import load_folder

    root = tmp_path / "data"
    for k, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            (root / name / f"{i}.png").write_bytes(uploads.encode(uploads.noise_rgb(20, 20, seed=10 * k + i), "PNG"))
    (root / "cats" / "drawing.jpg").write_bytes(EPS)
    spec = BUILTIN_TASKS["cifar10"].with_overrides(slug="t", classes=(), image_size=(16, 16))
    data = load_folder(root, spec)
    assert data.skipped["count"] == 1 and data.skipped["files"][0]["file"].endswith("drawing.jpg")
    assert not stand_in_gs.exists()


OTHER_FORMATS = ["EPS", "ICO", "PCX", "PPM", "SGI", "TGA", "TIFF"]


@pytest.mark.parametrize("fmt", OTHER_FORMATS)
def test_only_the_allowed_formats_are_read(uploads, fmt):
    data = EPS if fmt == "EPS" else uploads.encode(uploads.noise_rgb(32, 32), fmt)
    with pytest.raises(InvalidInput) as info:
        decode_image(data)
    assert_bilingual(info.value, 400)
    assert "WebP" in info.value.en


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_the_allowed_formats_are_read(uploads, fmt):
    assert decode_image(uploads.encode(uploads.noise_rgb(32, 48), fmt)).size == (48, 32)


OVER_THE_LIMITS = {  # name -> (bytes builder given the upload builders, status): each decodes to more than a few megapixels
    "RGBA PNG 4095×4095": (lambda u: u.encode(Image.new("RGBA", (4095, 4095), (9, 9, 9, 128)), "PNG"), 413),
    "grey PNG 1×39,000,000": (lambda u: u.encode(Image.new("L", (39_000_000, 1)), "PNG"), 413),
    "grey PNG 3000×3000": (lambda u: u.encode(Image.new("L", (3000, 3000), 200), "PNG"), 413),
    "progressive JPEG 4000×3000": (lambda u: u.encode(Image.new("RGB", (4000, 3000), "white"), "JPEG",
                                                      progressive=True), 413),
    "baseline JPEG 8000×5000": (lambda u: u.encode(Image.new("L", (8000, 5000), 200), "JPEG"), 413),
    "WebP 2000×1200": (lambda u: u.encode(u.noise_rgb(40, 40).resize((2000, 1200)), "WEBP"), 413),
    "PNG 20×1000 (aspect 50:1)": (lambda u: u.encode(u.digit_like(20, 1000), "PNG"), 400),
    "GIF 2000×40 (aspect 50:1)": (lambda u: u.encode(u.noise_rgb(40, 2000).quantize(8), "GIF"), 400),
}


@pytest.mark.parametrize("case", sorted(OVER_THE_LIMITS))
def test_pixel_and_aspect_caps(uploads, case):
    build, status = OVER_THE_LIMITS[case]
    data = build(uploads)
    with pytest.raises(InvalidInput) as info:
        decode_image(data)
    assert_bilingual(info.value, status)
    assert ("megapixels" if status == 413 else "32 times") in info.value.en


def test_a_big_baseline_jpeg_is_read_at_reduced_scale(uploads):
    """A 24 MP camera photo passes: libjpeg decodes it at 1/2 scale or less."""
    img = decode_image(uploads.encode(Image.new("RGB", (6000, 4000), (200, 30, 30)), "JPEG"))
    assert max(img.size) <= 1024 and img.getpixel((5, 5))[0] > 150


def test_sixteen_bit_is_converted_without_a_float_copy(uploads):
    """Python-side allocations while decoding a 4 MP 16-bit PNG stay under 4 bytes a pixel (a
    float64 copy alone is 8)."""
    import tracemalloc

    ramp = np.tile(np.linspace(0, 65535, 2000).astype(np.uint16), (2000, 1))
    data = uploads.encode(Image.fromarray(ramp), "PNG")
    tracemalloc.start()
    try:
        img = decode_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert img.mode == "L" and peak < 4 * ramp.size, peak
    row = np.asarray(img)[0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)


def test_decodes_at_once_are_bounded_per_process(uploads, monkeypatch):
    """Eight threads decoding together: never more than MAX_DECODES inside the decoder; a thread
    that cannot get a slot in time gets a bilingual 503."""
    import threading
    import time

    from app import imagefile

    inside, peak, lock = [0], [0], threading.Lock()
    real = imagefile._decode

    def slow_decode(data, max_side):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return real(data, max_side)

    monkeypatch.setattr(imagefile, "_decode", slow_decode)
    png = uploads.encode(uploads.noise_rgb(), "PNG")
    threads = [threading.Thread(target=decode_image, args=(png,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == imagefile.MAX_DECODES
    monkeypatch.setattr(imagefile, "DECODE_WAIT_SECONDS", 0.05)
    held = [imagefile._slots.acquire() for _ in range(imagefile.MAX_DECODES)]
    try:
        with pytest.raises(InvalidInput) as info:
            decode_image(png)
        assert_bilingual(info.value, 503)
    finally:
        for _ in held:
            imagefile._slots.release()


@pytest.mark.parametrize("mode", ["RGBA", "P", "1", "L", "RGB"])
def test_early_reduction_in_bands_equals_one_reduce(mode):
    """`reduce_early` works a band of rows at a time (memory); the picture is the one a single
    `reduce` of the whole image gives."""
    from app.imagefile import reduce_early

    rgba = np.random.default_rng(5).integers(0, 256, (1300, 2500, 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    img = img if mode == "RGBA" else img.convert("RGB").quantize(16) if mode == "P" else img.convert(mode)
    whole = (img.convert("RGBA") if mode == "P" else img.convert("L") if mode == "1" else img).reduce(2)
    banded = reduce_early(img, 1024)
    assert banded.mode == whole.mode and banded.size == whole.size == (1250, 650)
    np.testing.assert_array_equal(np.asarray(banded), np.asarray(whole))
