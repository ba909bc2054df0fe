"""Property-based: random bytes and strings into the preprocessing and tokenization
functions. Each may only return a valid input or raise the project's own `InvalidInput`.

Random bytes alone rarely get past an image header, so the image properties also mutate real
files of every format Pillow reads (flipped bytes, truncation, spliced headers): that is where
decoders crash. Example counts stay modest so the suite stays fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.errors import InvalidInput
from app.decoding import GenerateRequest, validate_request
from app.imaging import bytes_to_array, decode_image
from app.tasks import BUILTIN_TASKS, IMAGE, TEXT
from app.text import Vocabulary, clean_words, normalize, split_lines, tokenize, tokenize_verse

IMAGE_SPECS = [s for s in BUILTIN_TASKS.values() if s.kind == IMAGE]
TEXT_SPECS = [s for s in BUILTIN_TASKS.values() if s.kind == TEXT]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seed_files(uploads) -> list[bytes]:
    """Small files of every format Pillow reads, to be mutated."""
    rgb, grey = uploads.noise_rgb(24, 20), uploads.digit_like(24, 20)
    files = [uploads.encode(rgb, fmt) for fmt in ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "ICO", "PPM", "TGA")]
    files += [uploads.encode(grey, "PNG"), uploads.encode(rgb.convert("P"), "GIF"), uploads.encode(rgb.convert("RGBA"), "PNG"),
              uploads.cmyk_jpeg(), uploads.png16(), uploads.palette_transparent(), uploads.animated_gif()[0],
              uploads.with_orientation(uploads.asymmetric(), 6, "JPEG")]
    return files




def assert_valid_or_refused(call) -> None:
    """`call()` returns normally or raises InvalidInput with both messages and a 4xx status."""
    try:
        call()
    except InvalidInput as err:
        assert err.en and err.vi and 400 <= err.status < 500


def assert_model_input(data: bytes, spec) -> None:
    try:
        arr = bytes_to_array(data, spec)
    except InvalidInput as err:
        assert err.en and err.vi and 400 <= err.status < 500
        return
    assert arr.shape == spec.input_shape and arr.dtype == np.uint8


@st.composite
def mutated_images(draw, seed_files: list[bytes]):
    """A real image file with a few bytes overwritten, then possibly truncated."""
    data = bytearray(draw(st.sampled_from(seed_files)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_refuse(data):
    def call():
        img = decode_image(data)
        assert isinstance(img, Image.Image) and img.mode in ("RGB", "L") and min(img.size) >= 1

    assert_valid_or_refused(call)


@pytest.mark.parametrize("spec", IMAGE_SPECS, ids=lambda s: s.slug)
@FAST
@given(st.data())
def test_mutated_images_give_model_input_or_refuse(seed_files, spec, data):
    assert_model_input(data.draw(mutated_images(seed_files)), spec)


@pytest.mark.parametrize("spec", IMAGE_SPECS, ids=lambda s: s.slug)
@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), mode=st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK"]),
       fill=st.integers(0, 255), fmt=st.sampled_from(["PNG", "TIFF"]))
def test_a_plain_image_is_refused_only_for_its_format_shape_or_blankness(uploads, spec, h, w, mode, fill, fmt):
    """A one-colour picture gives model input unless the app does not read TIFF, one side is more
    than MAX_ASPECT times the other, or the task looks for ink (digits, garments) and finds none."""
    from app.imagefile import MAX_ASPECT

    img = Image.new(mode, (w, h), fill if mode not in ("RGB", "RGBA", "CMYK") else (fill,) * len(mode))
    if mode == "CMYK":
        fmt = "TIFF"  # PNG cannot store CMYK
    data = uploads.encode(img, fmt)
    refused = fmt == "TIFF" or max(h, w) > MAX_ASPECT * min(h, w) or spec.preprocess in ("mnist", "fashion")
    if refused:
        with pytest.raises(InvalidInput) as info:
            bytes_to_array(data, spec)
        assert info.value.status == 400 and info.value.en and info.value.vi
    else:
        arr = bytes_to_array(data, spec)
        assert arr.shape == spec.input_shape and arr.dtype == np.uint8


# ----------------------------------------------------------------------------- text
TEXTS = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)


@FAST
@given(TEXTS)
def test_normalizers_and_tokenizers_are_total(text):
    assert normalize(normalize(text)) == normalize(text)
    for tokenizer in ("words", "syllables"):
        tokens = tokenize(text, tokenizer)
        assert all(t and not any(ch.isspace() for ch in t) for t in tokens)
        assert tokens == tokenize(normalize(text), tokenizer)
    assert clean_words(text) == tokenize(text, "words")
    assert all(line.strip() for line in split_lines(text))
    vocab = Vocabulary.build([["trăm", "năm"]], "syllables")
    ids = vocab.encode(tokenize_verse(split_lines(text)))
    assert all(0 <= i < len(vocab) for i in ids)


PARAM_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                         TEXTS, st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
PARAM_KEYS = ("seed", "length", "strategy", "temperature", "top_k", "top_p", "beam_width", "random_seed", "meter")


@pytest.mark.parametrize("spec", TEXT_SPECS, ids=lambda s: s.slug)
@FAST
@given(params=st.one_of(st.dictionaries(st.sampled_from(PARAM_KEYS), PARAM_VALUES, max_size=9),
                        st.fixed_dictionaries({"seed": TEXTS}, optional={k: PARAM_VALUES for k in PARAM_KEYS[1:]}),
                        PARAM_VALUES))
def test_validate_request_returns_a_valid_request_or_refuses(spec, params):
    try:
        req = validate_request(spec, params)
    except InvalidInput as err:
        assert err.en and err.vi and err.status == 400
        return
    assert isinstance(req, GenerateRequest) and req.seed.strip() and clean_words(req.seed)
    assert 1 <= req.length and 0.0 < req.temperature and 1 <= req.top_k and 0.0 < req.top_p <= 1.0
    assert 1 <= req.beam_width and (req.random_seed is None or 0 <= req.random_seed < 2**32)
    assert all(np.isfinite(v) for v in (req.temperature, req.top_p))


# ----------------------------------------------------------------------------- through the app
APP_SETTINGS = settings(max_examples=40, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("slug", [s.slug for s in TEXT_SPECS])
@APP_SETTINGS
@given(params=st.one_of(st.dictionaries(st.sampled_from(PARAM_KEYS), PARAM_VALUES, max_size=9),
                        st.fixed_dictionaries({"seed": TEXTS}, optional={k: PARAM_VALUES for k in PARAM_KEYS[1:]}),
                        PARAM_VALUES))
def test_generate_api_answers_200_or_a_clear_400(text_client, slug, params):
    resp = text_client.post(f"/api/v1/tasks/{slug}/generate", json=params)
    assert resp.status_code in (200, 400) and resp.is_json
    body = resp.get_json()
    assert body["text"].strip() if resp.status_code == 200 else (body["error_en"] and body["error_vi"])


@APP_SETTINGS
@given(st.data())
def test_predict_api_answers_200_or_a_clear_4xx(seed_files, client, data):
    import io

    upload = data.draw(mutated_images(seed_files))
    resp = client.post("/api/v1/tasks/mnist/predict", data={"file": (io.BytesIO(upload), "x.png")})
    assert resp.status_code in (200, 400, 413) and resp.is_json
    body = resp.get_json()
    assert body["top"] if resp.status_code == 200 else (body["error_en"] and body["error_vi"])


# ----------------------------------------------------------------------------- images already in the model's format
@pytest.mark.parametrize("spec", [BUILTIN_TASKS["mnist"], BUILTIN_TASKS["fashion_mnist"]], ids=lambda s: s.slug)
@settings(max_examples=80, deadline=None)
@given(pixels=st.binary(min_size=28 * 28, max_size=28 * 28), fmt=st.sampled_from(["PNG", "BMP"]))
def test_any_28x28_grey_image_is_read_as_is_unless_constant(uploads, spec, pixels, fmt):
    arr = np.frombuffer(pixels, np.uint8).reshape(28, 28)
    data = uploads.encode(Image.fromarray(arr, "L"), fmt)
    if arr.min() == arr.max():
        with pytest.raises(InvalidInput) as info:
            bytes_to_array(data, spec)
        assert info.value.status == 400 and info.value.en and info.value.vi
        return
    out = bytes_to_array(data, spec)[..., 0]
    light_backdrop = np.median(np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])) > 127
    assert (out == (255 - arr if light_backdrop else arr)).all()  # pixel for pixel, never refused
