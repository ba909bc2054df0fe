"""A finished run's page says where its test images came from: the official test split of a
built-in data set, or the stratified share held out of an instructor's folder (size and seed)."""

from __future__ import annotations

import io
import re

from app.records import FINISHED, Run, db


def finished(app, dataset: str, test_count: int) -> str:
    """Id of a finished run record on `dataset` with `test_count` test images."""
    with app.app_context():
        run = Run(dataset=dataset, nickname="Lan", status=FINISHED, metrics={"test_accuracy": 0.5, "test_count": test_count},
                  recipe={"reading": "rows", "cell": "lstm", "units": 8, "layers": 1}, settings={"seed": 3})
        db.session.add(run)
        db.session.commit()
        return run.id


def split_sentence(client, run_id: str, lang: str) -> str:
    html = client.get(f"/lab/runs/{run_id}?lang={lang}").get_data(as_text=True)
    match = re.search(r'<span id="test-split">(.*?)</span>', html)
    assert match, html[:500]
    return match.group(1)


def test_an_instructors_split_names_its_folder_share_and_seed(signed_in, instructor_app, class_zip):
    upload = signed_in.post("/instructor/datasets/upload", data={"file": (io.BytesIO(class_zip(n=40)), "set.zip")},
                            content_type="multipart/form-data")
    saved = signed_in.post(upload.headers["Location"], data={"slug": "shapes", "title_en": "Shapes", "title_vi": "Hình",
                                                             "image_size": "16", "colour": "rgb"})
    assert saved.status_code == 303
    run_id = finished(instructor_app, "shapes", 16)
    en, vi = (split_sentence(signed_in, run_id, lang) for lang in ("en", "vi"))
    assert en == ("16 test images held out of the instructor&#39;s folder of 80: a stratified 20% of each class, "
                  "drawn with seed 20261128 when the data set was saved, never used in training")
    assert vi.startswith("16 ảnh kiểm tra tách riêng từ thư mục 80 ảnh của giảng viên: 20% mỗi lớp") and "20261128" in vi
    assert "official" not in en and "chính thức" not in vi


def test_a_built_in_run_names_the_official_test_split(instructor_app):
    client = instructor_app.test_client()
    run_id = finished(instructor_app, "mnist", 10000)
    assert split_sentence(client, run_id, "en") == ("10,000 test images from the data set&#39;s official test split, "
                                                    "never used in training")
    assert split_sentence(client, run_id, "vi") == "10.000 ảnh từ tập kiểm tra chính thức của bộ dữ liệu, không dùng khi huấn luyện"
