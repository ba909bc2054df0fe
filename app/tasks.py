"""The task registry: the one place a task is declared.

Training and serving both read these specs, so a task's input shape, colour mode, preprocessing
and class names can never drift apart. No Flask and no Keras here: this module is imported by
the web app, the training scripts and the tests alike.

A task trained from an instructor's image folder is not listed here: its `card.json` carries the
same fields and `TaskSpec.from_dict` rebuilds the spec from its `task` block (see `discover_tasks`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

IMAGE = "image"
TEXT = "text"
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # a task's folder name, URL part and card slug
# The word LSTM's sizes (training.build.make_word_lstm keywords) unless a text task's
# `extra["model"]` overrides some of them.
TEXT_MODEL = {"embedding": 128, "units": 256, "dropout": 0.4, "projection": 128}


@dataclass(frozen=True)
class ClassName:
    """One class label in both languages."""

    en: str
    vi: str


@dataclass(frozen=True)
class TaskSpec:
    """Everything training and serving must agree on for one task."""

    slug: str
    kind: str  # IMAGE or TEXT
    title_en: str
    title_vi: str
    summary_en: str = ""
    summary_vi: str = ""
    # Image tasks ---------------------------------------------------------------------------
    image_size: tuple[int, int] = (28, 28)  # (height, width): height = LSTM time steps
    colour: str = "grey"  # "grey" (1 channel) or "rgb" (3 channels)
    preprocess: str = "plain"  # "mnist" (digit centring), "fashion" (object centring) or "plain"
    resize: str = "crop"  # "crop": centre-crop to the aspect ratio then resize; "stretch": resize
    classes: tuple[ClassName, ...] = ()
    # Text tasks ----------------------------------------------------------------------------
    tokenizer: str = ""  # "words" (lower case, punctuation removed) or "syllables" (verse)
    openings: tuple[str, ...] = ()  # real openings offered as one-click seeds; verse: the poem's first line first
    # Data ----------------------------------------------------------------------------------
    data_path: str = ""  # relative to the data directory (file or folder)
    keras_dataset: str = ""  # keras.datasets module used when online and no local copy exists
    data_source: str = ""  # human-readable provenance for the card
    licence: str = ""
    # Training defaults ---------------------------------------------------------------------
    architecture: str = ""
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    # Targets (the results report, the cards and the pages read them) --------------------------
    floor: float | None = None  # image: test accuracy below which the model falls short
    goal: float | None = None  # image: test accuracy aimed for
    published: float | None = None  # image: best published row-by-row LSTM's test accuracy
    goal_below_ngram: float | None = None  # text: share the perplexity should be below the n-gram's
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def channels(self) -> int:
        """Number of colour channels the model reads."""
        return 1 if self.colour == "grey" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Model input shape (height, width, channels)."""
        return (self.image_size[0], self.image_size[1], self.channels)

    @property
    def class_names(self) -> list[str]:
        """English class names in label order."""
        return [c.en for c in self.classes]

    @property
    def default_seed(self) -> str:
        """The seed an empty seed box starts from: the poem's opening line for verse, none otherwise."""
        return self.openings[0] if self.tokenizer == "syllables" and self.openings else ""

    def title(self, lang: str) -> str:
        """Title in the given language ("vi" or "en")."""
        return self.title_vi if lang == "vi" else self.title_en

    def summary(self, lang: str) -> str:
        """One-line description in the given language."""
        return self.summary_vi if lang == "vi" else self.summary_en

    def label(self, index: int, lang: str) -> str:
        """Name of class `index` in the given language."""
        c = self.classes[index]
        return c.vi if lang == "vi" else c.en

    def to_dict(self) -> dict:
        """JSON-ready form, stored in every card so the card alone can declare the task."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["classes"] = [asdict(c) for c in self.classes]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        """Inverse of `to_dict`; unknown keys are ignored so older cards still load."""
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        kw["image_size"] = tuple(kw.get("image_size", (28, 28)))
        kw["classes"] = tuple(ClassName(**c) for c in kw.get("classes", ()))
        kw["openings"] = tuple(str(o) for o in kw.get("openings", ()))
        return cls(**kw)

    def with_overrides(self, **kw) -> TaskSpec:
        """A copy with some fields replaced (used by instructor-folder tasks)."""
        return replace(self, **kw)


def _classes(pairs) -> tuple[ClassName, ...]:
    return tuple(ClassName(en, vi) for en, vi in pairs)


MNIST = TaskSpec(
    slug="mnist",
    kind=IMAGE,
    title_en="Handwritten digits (MNIST)",
    title_vi="Chữ số viết tay (MNIST)",
    summary_en="An LSTM reads a 28×28 digit one row at a time and names the digit.",
    summary_vi="Mạng LSTM đọc ảnh chữ số 28×28 từng hàng một và cho biết đó là số mấy.",
    image_size=(28, 28),
    colour="grey",
    preprocess="mnist",
    classes=_classes((str(i), str(i)) for i in range(10)),
    data_path="mnist/mnist.npz",
    keras_dataset="mnist",
    data_source="MNIST (LeCun, Cortes, Burges), 60,000 train / 10,000 test, official order",
    architecture="rows_cols",
    epochs=15,
    batch_size=128,
    learning_rate=2e-3,
    extra={"augment": 0.08, "model": {"units": 64}},
    floor=0.99,
    goal=0.993,
    published=0.989,
)

FASHION_MNIST = TaskSpec(
    slug="fashion_mnist",
    kind=IMAGE,
    title_en="Clothing (Fashion-MNIST)",
    title_vi="Quần áo (Fashion-MNIST)",
    summary_en="An LSTM reads a 28×28 picture of clothing row by row and names the garment.",
    summary_vi="Mạng LSTM đọc ảnh quần áo 28×28 từng hàng một và cho biết đó là loại gì.",
    image_size=(28, 28),
    colour="grey",
    preprocess="fashion",
    classes=_classes(
        [
            ("T-shirt/top", "Áo phông"),
            ("Trouser", "Quần dài"),
            ("Pullover", "Áo len chui đầu"),
            ("Dress", "Váy liền"),
            ("Coat", "Áo khoác"),
            ("Sandal", "Dép xăng-đan"),
            ("Shirt", "Áo sơ mi"),
            ("Sneaker", "Giày thể thao"),
            ("Bag", "Túi xách"),
            ("Ankle boot", "Bốt cổ ngắn"),
        ]
    ),
    data_path="fashion_mnist/fashion_mnist.npz",
    keras_dataset="fashion_mnist",
    data_source="Fashion-MNIST (Zalando Research, MIT), 60,000 train / 10,000 test",
    licence="MIT (Zalando SE)",
    architecture="rows_cols",
    epochs=15,
    batch_size=128,
    learning_rate=2e-3,
    extra={"augment": 0.0, "flip": True, "model": {"units": 64}},
    floor=0.905,
    goal=0.915,
    published=0.896,
)

CIFAR10 = TaskSpec(
    slug="cifar10",
    kind=IMAGE,
    title_en="Objects and animals (CIFAR-10)",
    title_vi="Đồ vật và con vật (CIFAR-10)",
    summary_en="An LSTM reads a 32×32 colour photo row by row and names one of ten classes.",
    summary_vi="Mạng LSTM đọc ảnh màu 32×32 từng hàng một và gọi tên một trong mười lớp.",
    image_size=(32, 32),
    colour="rgb",
    preprocess="plain",
    resize="crop",
    classes=_classes(
        [
            ("airplane", "Máy bay"),
            ("automobile", "Ô tô"),
            ("bird", "Chim"),
            ("cat", "Mèo"),
            ("deer", "Hươu"),
            ("dog", "Chó"),
            ("frog", "Ếch"),
            ("horse", "Ngựa"),
            ("ship", "Tàu thủy"),
            ("truck", "Xe tải"),
        ]
    ),
    data_path="cifar10/cifar10_jpeg.npz",
    keras_dataset="cifar10",
    data_source="CIFAR-10 (Krizhevsky 2009), 50,000 train / 10,000 test; local copy is JPEG q75",
    architecture="renet",
    epochs=30,
    batch_size=128,
    learning_rate=2e-3,
    # 4×4-pixel patches: an 8×8 grid, 8 steps per sweep (serving time is mostly sequential steps).
    extra={"augment": 0.125, "flip": True, "jitter": 0.2, "label_smoothing": 0.1,
           "model": {"units": 80, "top_units": 128, "patch": 4}},
    floor=0.76,
    goal=0.8,
    published=0.56,
)

CATS_DOGS = TaskSpec(
    slug="cats_dogs",
    kind=IMAGE,
    title_en="Cat or dog",
    title_vi="Mèo hay chó",
    summary_en="An LSTM reads a 64×64 photo row by row and tells a cat from a dog.",
    summary_vi="Mạng LSTM đọc ảnh 64×64 từng hàng một và phân biệt mèo với chó.",
    image_size=(64, 64),
    colour="rgb",
    preprocess="plain",
    resize="stretch",
    classes=_classes([("cat", "Mèo"), ("dog", "Chó")]),
    data_path="cats_dogs/cats_dogs_64_jpeg.npz",
    data_source="Microsoft PetImages (Asirra), 64×64, split id ≥ 11250 → test",
    architecture="renet",
    epochs=20,
    batch_size=64,
    learning_rate=2e-3,
    extra={"augment": 0.15, "flip": True, "jitter": 0.25, "label_smoothing": 0.1, "weight_average": 0.998,
           "model": {"units": 64, "top_units": 128, "patch": 8}},
    floor=0.83,
    goal=0.85,
)

FACES_GENDER = TaskSpec(
    slug="faces_gender",
    kind=IMAGE,
    title_en="Face: male or female",
    title_vi="Khuôn mặt: nam hay nữ",
    summary_en="An LSTM reads a 64×64 aligned face row by row and guesses the recorded gender.",
    summary_vi="Mạng LSTM đọc ảnh khuôn mặt 64×64 từng hàng một và đoán giới tính được ghi nhận.",
    image_size=(64, 64),
    colour="rgb",
    preprocess="plain",
    resize="crop",
    classes=_classes([("male", "Nam"), ("female", "Nữ")]),
    data_path="faces_gender/utkface_gender_64_jpeg.npz",
    data_source="UTKFace aligned & cropped faces, 64×64, sha1-based 10% test split",
    licence="UTKFace: non-commercial research use only",
    architecture="renet",
    epochs=20,
    batch_size=64,
    learning_rate=2e-3,
    extra={
        "augment": 0.1,
        "flip": True,
        "jitter": 0.2,
        "label_smoothing": 0.1,
        "weight_average": 0.998,
        "model": {"units": 64, "top_units": 128, "patch": 8},
        "intended_use": (
            "Teaching: shows how a recurrent network reads a face image row by row. Not for "
            "identifying people, inferring anyone's gender identity, or any decision about a person."
        ),
        "limitations": (
            "UTKFace labels are a binary 'gender' recorded by the data set's authors; the images are "
            "web photos skewed by age and race (see accuracy by group). 64×64 aligned faces only: "
            "uncropped photos, profiles and children are read less reliably."
        ),
    },
    floor=0.9,
    goal=0.92,
)

NYT_HEADLINES = TaskSpec(
    slug="nyt_headlines",
    kind=TEXT,
    title_en="New York Times headlines",
    title_vi="Tiêu đề báo New York Times",
    summary_en="A word-level LSTM writes a headline that continues your first words.",
    summary_vi="Mạng LSTM mức từ viết tiếp một tiêu đề báo từ vài từ bạn gợi ý.",
    tokenizer="words",
    openings=("How to", "New York", "What the", "Trump Says", "A New"),
    data_path="nyt_headlines",
    data_source="Kaggle nyt-comments, nine Articles*.csv files (Jan 2017 – Apr 2018)",
    architecture="word_lstm",
    epochs=40,
    batch_size=64,
    learning_rate=2e-3,
    # Also train on the training articles' snippets (training/textdata.py), which lets a larger
    # LSTM with locked (variational) and whole-word dropout pay off; AWD-LSTM's weight drop on the
    # recurrent kernel, tied input/output embeddings and an average of the weights on top.
    extra={"aux_text": "snippets", "weight_average": 0.998,
           "model": {"embedding": 200, "units": 384, "dropout": 0.4, "word_dropout": 0.1, "locked": True,
                     "tied": True, "weight_drop": 0.3}},
    goal_below_ngram=0.10,
)

KIEU = TaskSpec(
    slug="kieu",
    kind=TEXT,
    title_en="Truyện Kiều verse (lục bát)",
    title_vi="Thơ Truyện Kiều (lục bát)",
    summary_en="A syllable-level LSTM continues your seed in Nguyễn Du's six-eight verse.",
    summary_vi="Mạng LSTM mức âm tiết viết tiếp câu thơ lục bát theo phong cách Nguyễn Du.",
    tokenizer="syllables",
    # The poem's first line (verse 1 of the corpus), then the openings of well-known passages.
    openings=("Trăm năm trong cõi người ta", "Đầu lòng hai ả tố nga", "Ngày xuân con én đưa thoi",
              "Cỏ non xanh tận chân trời", "Thanh minh trong tiết tháng ba"),
    data_path="truyen_kieu/truyen_kieu.txt",
    data_source="Truyện Kiều (Nguyễn Du), 3,254 verses, public domain",
    licence="public domain",
    architecture="word_lstm",
    # The shipped model: TEXT_MODEL's sizes, batches of 16 verse blocks (an epoch of ~325 blocks
    # needs the optimiser steps), up to 80 epochs with early stopping.
    epochs=80,
    batch_size=16,
    learning_rate=2e-3,
    goal_below_ngram=0.10,
)

BUILTIN_TASKS: dict[str, TaskSpec] = {
    t.slug: t for t in (MNIST, FASHION_MNIST, CIFAR10, CATS_DOGS, FACES_GENDER, NYT_HEADLINES, KIEU)
}


def get_task(slug: str, models_dir: Path | None = None) -> TaskSpec:
    """The spec for `slug`: a built-in task, or one declared by `models_dir/<slug>/card.json`."""
    if slug in BUILTIN_TASKS:
        return BUILTIN_TASKS[slug]
    if models_dir is not None:
        card = Path(models_dir) / slug / "card.json"
        if card.is_file():
            return TaskSpec.from_dict(json.loads(card.read_text(encoding="utf-8"))["task"])
    raise KeyError(slug)


def discover_tasks(models_dir: Path) -> dict[str, TaskSpec]:
    """Every task to serve: the built-in ones plus any folder `models_dir/*/` with a card.

    A card that cannot be read does not hide its task: the built-in spec is kept and the model
    store reports the task as unavailable.
    """
    tasks = dict(BUILTIN_TASKS)
    for card_path in sorted(Path(models_dir).glob("*/card.json")):
        slug = card_path.parent.name
        if slug in tasks or slug.startswith("."):
            continue
        try:
            tasks[slug] = TaskSpec.from_dict(json.loads(card_path.read_text(encoding="utf-8"))["task"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return tasks
