"""Data sets brought by an instructor: every unsafe zip is refused with a bilingual error and
leaves nothing behind; the preview counts, skips, flags imbalance and shows thumbnails; the saved
folder has the layout `python -m training folder` reads, with a split fixed once; the server
folder option stays inside its root; the bearer API uploads and lists."""

from __future__ import annotations

import html
import io
import json
import os
import stat
import zipfile

import pytest

from helpers.images import make_zip, png_bytes
from helpers.instructor import leftovers


def upload(client, data: bytes, name: str = "set.zip", lang: str = "en"):
    """POST a zip to the console's upload form."""
    return client.post(f"/instructor/datasets/upload?lang={lang}", data={"file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for cls in ("red", "blue"):
            for i in range(3):
                zf.writestr(f"{cls}/{i}.png", png_bytes())
        link = zipfile.ZipInfo("red/passwd.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


def good(n: int = 3) -> dict:
    files = {f"red/{i}.png": png_bytes((220, 40, 40)) for i in range(n)}
    files.update({f"blue/{i}.png": png_bytes((40, 40, 220)) for i in range(n)})
    return files


UNSAFE = {
    "zip-slip": (lambda: make_zip({**good(), "red/../../evil.png": png_bytes()}), 400, "leaves its folder"),
    "absolute path": (lambda: make_zip({**good(), "/etc/evil.png": png_bytes()}), 400, "absolute path"),
    "drive letter": (lambda: make_zip({**good(), "C:\\evil.png": png_bytes()}), 400, "absolute path"),
    "symlink": (symlink_zip, 400, "symbolic link"),
    "bomb by ratio": (lambda: make_zip({**good(), "red/zeros.png": b"\0" * (8 * 2**20)}), 413, "zip bomb"),
    "nested archive by name": (lambda: make_zip({**good(), "red/more.zip": make_zip(good())}), 400, "another archive"),
    "nested archive in disguise": (lambda: make_zip({**good(), "red/photo.png": make_zip(good())}), 400,
                                   "another archive"),
    "one class": (lambda: make_zip({f"red/{i}.png": png_bytes() for i in range(4)}), 400, "at least two classes"),
    "no class at all": (lambda: make_zip({"a.png": png_bytes(), "b.png": png_bytes()}), 400, "at least two classes"),
    "class without images": (lambda: make_zip({**good(), "green/notes.txt": b"hello", "green/x.png": b"not a png"}),
                             400, "no readable image"),
    "class with one image": (lambda: make_zip({**good(), "green/0.png": png_bytes((0, 200, 0))}), 400, "only one"),
    "not a zip": (lambda: b"this is plain text, not an archive", 400, "not a zip"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_zip_is_refused_and_nothing_is_written(signed_in, instructor_app, case):
    build, status, words = UNSAFE[case]
    response = upload(signed_in, build())
    assert response.status_code == status, response.get_data(as_text=True)[:400]
    assert words in response.get_data(as_text=True)
    vi = upload(signed_in, build(), lang="vi")
    assert vi.status_code == status and "<html lang=\"vi\">" in vi.get_data(as_text=True)
    assert leftovers(instructor_app) == []  # no staging folder, no data set


@pytest.mark.parametrize("key,value,words", [
    ("DATASET_MAX_FILES", 5, "entries; the limit is 5"),
    ("DATASET_MAX_TOTAL_BYTES", 3000, "add up to more than"),
    ("DATASET_MAX_CLASSES", 1, "the limit is 1"),
])
def test_limits_on_count_total_size_and_classes(signed_in, instructor_app, key, value, words):
    instructor_app.config[key] = value  # this test's own app
    response = upload(signed_in, make_zip(good(4)))
    assert response.status_code == 413
    assert words in response.get_data(as_text=True)
    assert leftovers(instructor_app) == []


def test_a_damaged_member_is_skipped_with_the_reason(instructor_app):
    """zipfile checks each member's CRC and stops at its declared size: a member whose bytes were
    changed is listed as damaged instead of being imported."""
    buf = io.BytesIO()
    picture = png_bytes((10, 200, 10))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in {**good(), "red/9.png": picture}.items():
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    at = raw.find(picture)
    assert at > 0
    raw[at + len(picture) // 2] ^= 0xFF  # the CRC no longer matches
    with instructor_app.test_request_context():
        from app.instructor import datasets

        token, preview = datasets.stage_zip(io.BytesIO(bytes(raw)), "damaged.zip")
    assert preview["total"] == 6
    assert preview["skipped"]["files"] == [{"file": "red/9.png", "en": "Damaged or unreadable (BadZipFile).",
                                            "vi": "Bị hỏng hoặc không đọc được (BadZipFile)."}]


def test_preview_counts_skips_thumbnails_and_imbalance(signed_in, instructor_app):
    files = {f"flowers/red/{i}.png": png_bytes((220, 40, 40), size=(40, 30)) for i in range(12)}
    files.update({f"flowers/blue/{i}.jpg": png_bytes((40, 40, 220), size=(40, 30)) for i in range(4)})
    files.update({"flowers/blue/readme.txt": b"not a picture", "flowers/notes.txt": b"outside",
                  "__MACOSX/flowers/._0.png": b"resource fork", "flowers/red/.DS_Store": b"x"})
    response = upload(signed_in, make_zip(files))
    assert response.status_code == 303
    page = signed_in.get(response.headers["Location"] + "?lang=en").get_data(as_text=True)
    assert page.count('class="thumb"') == 8 + 4  # at most eight thumbnails per class
    assert 'id="imbalance"' in page and "red has 3.0 times" in page
    assert "readme.txt" in page and "not an image" in page
    assert "Not inside a class folder." in page
    assert "__MACOSX" not in page and ".DS_Store" not in page
    vi = signed_in.get(response.headers["Location"] + "?lang=vi").get_data(as_text=True)
    assert "Không nằm trong thư mục lớp nào." in vi
    token = response.headers["Location"].rsplit("/", 1)[1]
    with instructor_app.test_request_context():
        from app.instructor import datasets

        preview = datasets.read_preview(token)
    assert [(c["name"], c["count"]) for c in preview["classes"]] == [("blue", 4), ("red", 12)]
    assert preview["skipped"]["count"] == 2
    assert preview["suggested"] == {"image_size": 16, "colour": "rgb", "median_short_side": 30, "grey_share": 0.0}
    assert all(t.startswith("data:image/jpeg;base64,") for c in preview["classes"] for t in c["thumbs"])


def test_huge_images_are_skipped_with_the_reason(signed_in, instructor_app):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (9000, 5000), 128).save(buf, "PNG")  # 45 megapixels in a small file
    response = upload(signed_in, make_zip({**good(), "red/huge.png": buf.getvalue()}))
    assert response.status_code == 303
    page = signed_in.get(response.headers["Location"] + "?lang=en").get_data(as_text=True)
    assert "huge.png" in page and "too large" in page


def test_grey_pictures_suggest_grey(signed_in, instructor_app):
    files = {f"{c}/{i}.png": png_bytes((v, v, v), size=(64, 64), mode="L") for c, v in (("dark", 40), ("light", 220))
             for i in range(3)}
    response = upload(signed_in, make_zip(files))
    token = response.headers["Location"].rsplit("/", 1)[1]
    with instructor_app.test_request_context():
        from app.instructor import datasets

        assert datasets.read_preview(token)["suggested"]["colour"] == "grey"
        assert datasets.read_preview(token)["suggested"]["image_size"] == 64


def save(client, location: str, **form):
    data = {"slug": "shapes", "title_en": "Shapes", "title_vi": "Hình", "image_size": "32", "colour": "rgb", **form}
    return client.post(location, data=data)


def test_save_writes_the_training_layout_with_a_fixed_split(signed_in, instructor_app, class_zip):
    location = upload(signed_in, class_zip(n=10)).headers["Location"]
    response = save(signed_in, location)
    assert response.status_code == 303 and response.headers["Location"].endswith("/instructor/datasets/shapes")
    folder = os.path.join(instructor_app.instance_path, "datasets", "shapes")
    record = json.load(open(os.path.join(folder, "dataset.json"), encoding="utf-8"))
    assert record["counts"]["per_class"] == {"blue": {"train": 7, "val": 1, "test": 2},
                                             "red": {"train": 7, "val": 1, "test": 2}}
    assert record["split"]["method"] == "stratified" and record["split"]["seed"] == 20261128
    assert sorted(os.listdir(os.path.join(folder, "train"))) == ["blue", "red"]
    assert leftovers(instructor_app) == sorted(
        [f"shapes/{p}" for p in ("dataset.json", "split.json")] +
        [os.path.relpath(os.path.join(d, f), os.path.join(instructor_app.instance_path, "datasets"))
         for d, _x, fs in os.walk(os.path.join(folder, "train")) for f in fs] +
        [os.path.relpath(os.path.join(d, f), os.path.join(instructor_app.instance_path, "datasets"))
         for d, _x, fs in os.walk(os.path.join(folder, "val")) for f in fs] +
        [os.path.relpath(os.path.join(d, f), os.path.join(instructor_app.instance_path, "datasets"))
         for d, _x, fs in os.walk(os.path.join(folder, "test")) for f in fs])  # the staging folder is gone
    # the same zip and seed give the same split, recorded file by file
    location = upload(signed_in, class_zip(n=10)).headers["Location"]
    assert save(signed_in, location, slug="shapes_again").status_code == 303
    split_a = json.load(open(os.path.join(folder, "split.json")))
    split_b = json.load(open(os.path.join(instructor_app.instance_path, "datasets", "shapes_again", "split.json")))
    assert split_a == split_b
    # python -m training folder reads it: training.imagefolder.load_folder with the bench's spec
    from app.instructor.datasets import list_datasets
    from training.imagefolder import load_folder

    with instructor_app.app_context():
        spec = {s.slug: s for s in list_datasets()}["shapes"]
    assert spec.input_shape == (32, 32, 3) and spec.class_names == ["blue", "red"]
    assert spec.extra["counts"] == {"train": 16, "test": 4}
    data = load_folder(spec.data_path, spec)
    assert data.x_train.shape == (14, 32, 32, 3) and len(data.y_test) == 4 and data.split["method"] == "folders"
    assert len(data.y_val) == 2 and data.split["validation"] == {"method": "folder", "folder": "val", "count": 2}
    # the console lists it, and the lab bench offers it
    assert "shapes_again" in signed_in.get("/instructor/datasets").get_data(as_text=True)
    with instructor_app.test_request_context():
        from app.lab.recipes import available_datasets

        assert "shapes" in available_datasets()


@pytest.mark.parametrize("form,status,words", [
    ({"slug": "Bad Name"}, 400, "lowercase"),
    ({"slug": "mnist"}, 409, "built-in"),
    ({"image_size": "33"}, 400, "Image size"),
    ({"colour": "sepia"}, 400, "Colour"),
])
def test_save_refuses_bad_choices(signed_in, instructor_app, class_zip, form, status, words):
    location = upload(signed_in, class_zip()).headers["Location"]
    response = save(signed_in, location + "?lang=en", **form)
    assert response.status_code == status and words in response.get_data(as_text=True)
    assert not os.path.exists(os.path.join(instructor_app.instance_path, "datasets", form.get("slug", "shapes")))


def test_a_name_is_taken_once(signed_in, instructor_app, class_zip):
    assert save(signed_in, upload(signed_in, class_zip()).headers["Location"]).status_code == 303
    response = save(signed_in, upload(signed_in, class_zip()).headers["Location"] + "?lang=en")
    assert response.status_code == 409 and "exists already" in response.get_data(as_text=True)


def test_discard_and_unknown_previews(signed_in, instructor_app, class_zip):
    location = upload(signed_in, class_zip()).headers["Location"]
    assert signed_in.post(location + "/discard").status_code == 303
    assert signed_in.get(location).status_code == 404
    assert signed_in.get("/instructor/datasets/preview/../../etc").status_code == 404
    assert signed_in.get("/instructor/datasets/preview/zzzz").status_code == 404
    assert leftovers(instructor_app) == []


# ----------------------------------------------------------------------------- server folder
def make_folder(root, name="pets", n=3):
    for cls, colour in (("cat", (200, 100, 50)), ("dog", (50, 100, 200))):
        d = root / name / cls
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"{i}.png").write_bytes(png_bytes(colour))
    return root / name


def test_server_folder_under_the_root(signed_in, instructor_app, tmp_path):
    folder = make_folder(tmp_path / "server")
    os.symlink(folder / "cat" / "0.png", folder / "dog" / "alias.png")  # inside the root: skipped, not followed
    response = signed_in.post("/instructor/datasets/folder", data={"folder": "pets"})
    assert response.status_code == 303
    page = signed_in.get(response.headers["Location"] + "?lang=en").get_data(as_text=True)
    assert "dog/alias.png" in page and "A symbolic link (not followed)." in page
    assert save(signed_in, response.headers["Location"], slug="pets").status_code == 303


@pytest.mark.parametrize("name", ["../outside", "pets/../../outside", "/etc", "link_out"])
def test_server_folder_cannot_leave_the_root(signed_in, instructor_app, tmp_path, name):
    make_folder(tmp_path, "outside")
    make_folder(tmp_path / "server")
    os.symlink(tmp_path / "outside", tmp_path / "server" / "link_out")
    response = signed_in.post("/instructor/datasets/folder?lang=en", data={"folder": name})
    assert response.status_code == 403, response.get_data(as_text=True)[:300]
    assert leftovers(instructor_app) == []


def test_a_symlink_out_inside_the_folder_refuses_it(signed_in, instructor_app, tmp_path):
    folder = make_folder(tmp_path / "server")
    (tmp_path / "secret.png").write_bytes(png_bytes())
    os.symlink(tmp_path / "secret.png", folder / "cat" / "secret.png")
    response = signed_in.post("/instructor/datasets/folder?lang=en", data={"folder": "pets"})
    assert response.status_code == 403 and "outside the allowed folder" in response.get_data(as_text=True)


def test_server_folder_is_off_without_a_root(signed_in, instructor_app):
    instructor_app.config["DATASET_SERVER_ROOT"] = ""
    response = signed_in.post("/instructor/datasets/folder?lang=en", data={"folder": "pets"})
    assert response.status_code == 403 and "turned off" in response.get_data(as_text=True)


# ----------------------------------------------------------------------------- the API
def test_api_upload_and_list(instructor_app, add_instructor, class_zip):
    add_instructor(instructor_app)
    token = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher"]).output.strip()
    client = instructor_app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/datasets", headers=auth, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(class_zip()), "set.zip"), "slug": "shapes", "title_en": "Shapes",
                                 "title_vi": "Hình", "image_size": "32", "colour": "rgb"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["dataset"]["counts"]["train"] == 8 and body["dataset"]["counts"]["val"] == 2 and body["thumbnails"] == {"blue": 6, "red": 6}
    listed = client.get("/api/v1/datasets", headers=auth).get_json()["datasets"]
    assert [d["slug"] for d in listed] == ["shapes"] and listed[0]["created_by"] == "teacher"
    bad = client.post("/api/v1/datasets", headers=auth, content_type="multipart/form-data",
                      data={"file": (io.BytesIO(make_zip({"red/../x.png": b"x"})), "x.zip"), "slug": "other"})
    assert bad.status_code == 400 and set(bad.get_json()) == {"error", "error_en", "error_vi", "status"}
    again = client.post("/api/v1/datasets", headers=auth, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(class_zip()), "set.zip"), "slug": "shapes"})
    assert again.status_code == 409
    assert leftovers(instructor_app) == sorted(p for p in leftovers(instructor_app) if p.startswith("shapes/"))


def test_uploads_above_the_page_limit_are_accepted_up_to_their_own(signed_in, instructor_app, class_zip):
    instructor_app.config["MAX_CONTENT_LENGTH"] = 1000  # the app's limit for pictures
    try:
        assert upload(signed_in, class_zip()).status_code == 303
        instructor_app.config["DATASET_MAX_UPLOAD_BYTES"] = 3 * 1024 * 1024
        big = upload(signed_in, make_zip({f"{c}/{i}.bin": os.urandom(400_000) for c in "ab" for i in range(5)}))
        assert big.status_code == 413 and "the limit is 3 MB" in big.get_data(as_text=True)  # the route's own
    finally:
        instructor_app.config["MAX_CONTENT_LENGTH"] = 8 * 1024 * 1024


def test_the_validation_set_is_fixed_once_and_every_run_uses_it(signed_in, instructor_app, class_zip):
    from app.instructor.datasets import list_datasets
    from training.imagefolder import load_folder

    assert save(signed_in, upload(signed_in, class_zip(n=20)).headers["Location"]).status_code == 303
    folder = os.path.join(instructor_app.instance_path, "datasets", "shapes")
    record = json.load(open(os.path.join(folder, "dataset.json"), encoding="utf-8"))
    assert record["counts"]["per_class"]["red"] == {"train": 14, "val": 2, "test": 4}
    assert record["split"]["validation"]["method"] == "fixed" and record["split"]["validation"]["folder"] == "val"
    listing = json.load(open(os.path.join(folder, "split.json")))
    assert sorted(listing["val"]["red"]) == sorted(os.listdir(os.path.join(folder, "val", "red")))
    assert not set(listing["val"]["red"]) & (set(listing["train"]["red"]) | set(listing["test"]["red"]))
    with instructor_app.app_context():
        spec = {s.slug: s for s in list_datasets()}["shapes"]
    assert spec.extra["counts"]["train"] == 32  # what the bench's subset counts from: train + validation
    data = load_folder(spec.data_path, spec)
    # the training code path (the one python -m training and the lab's jobs call): the same
    # validation images whatever the run's seed, the whole of train shuffled by the seed
    (xa, ya), (va, vya) = data.train_validation(seed=1)
    (xb, yb), (vb, vyb) = data.train_validation(seed=2)
    assert len(ya) == len(yb) == 28 and len(vya) == 4
    assert (va == vb).all() and (vya == vyb).all() and (va == data.x_val).all()
    assert not (xa == xb).all()  # the seed still shuffles the training images
    # a subset (the bench's subset, --quick) keeps the fixed validation set whole
    assert len(data.subset(10, 4).train_validation(seed=1)[1][1]) == 4


def test_without_a_val_folder_each_run_holds_out_its_own(signed_in, instructor_app, class_zip):
    from app.instructor.datasets import list_datasets
    from training.imagefolder import load_folder

    # 2 images a class: one to test, one to train, none left to fix a validation set with
    assert save(signed_in, upload(signed_in, class_zip(n=2)).headers["Location"]).status_code == 303
    folder = os.path.join(instructor_app.instance_path, "datasets", "shapes")
    record = json.load(open(os.path.join(folder, "dataset.json"), encoding="utf-8"))
    assert record["split"]["validation"]["method"] == "per run" and not os.path.exists(os.path.join(folder, "val"))
    with instructor_app.app_context():
        spec = {s.slug: s for s in list_datasets()}["shapes"]
    data = load_folder(spec.data_path, spec)
    assert data.x_val is None and "validation" not in data.split
    (_x, y), (_v, vy) = data.train_validation(seed=1)
    assert len(y) + len(vy) == 2 and len(vy) == 1
    assert "per run" in signed_in.get("/instructor/datasets/shapes?lang=en").get_data(as_text=True)


def test_delete_a_data_set_refused_while_runs_wait_on_it(signed_in, instructor_app, class_zip, add_instructor):
    from app.records import FINISHED, QUEUED, RUNNING, Dataset, Run, db

    assert save(signed_in, upload(signed_in, class_zip()).headers["Location"]).status_code == 303
    folder = os.path.join(instructor_app.instance_path, "datasets", "shapes")
    with instructor_app.app_context():
        db.session.add(Run(id="a00000000001", dataset="shapes", status=QUEUED, recipe={}, settings={}))
        db.session.add(Run(id="a00000000002", dataset="shapes", status=RUNNING, recipe={}, settings={}))
        db.session.commit()
    page = signed_in.get("/instructor/datasets/shapes").get_data(as_text=True)
    assert 'action="/instructor/datasets/shapes/delete"' in page
    for lang, words in (("en", "2 run(s) on data set 'shapes' are queued or running"),
                        ("vi", "Có 2 lượt huấn luyện trên bộ dữ liệu 'shapes' đang chờ hoặc đang chạy")):
        refused = signed_in.post(f"/instructor/datasets/shapes/delete?lang={lang}")
        assert refused.status_code == 409 and words in html.unescape(refused.get_data(as_text=True))
    assert os.path.isfile(os.path.join(folder, "dataset.json"))  # nothing touched
    with instructor_app.app_context():
        for run in db.session.scalars(db.select(Run)):
            run.status = FINISHED
        db.session.commit()
    response = signed_in.post("/instructor/datasets/shapes/delete")
    assert response.status_code == 303 and response.headers["Location"].endswith("/instructor/datasets")
    assert not os.path.exists(folder) and leftovers(instructor_app) == []  # the trash is emptied too
    assert os.listdir(os.path.join(instructor_app.instance_path, "datasets", ".trash")) == []
    with instructor_app.test_request_context():
        from app.lab.recipes import available_datasets

        assert "shapes" not in available_datasets()
        assert db.session.get(Dataset, "shapes") is None
        assert db.session.get(Run, "a00000000001") is not None  # finished runs keep their records
    assert signed_in.post("/instructor/datasets/shapes/delete?lang=en").status_code == 404
    # the same through the API, with a bearer token
    add_instructor(instructor_app, "api")
    token = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "api"]).output.strip()
    auth = {"Authorization": f"Bearer {token}"}
    missing = signed_in.delete("/api/v1/datasets/shapes", headers=auth)
    assert missing.status_code == 404 and set(missing.get_json()) == {"error", "error_en", "error_vi", "status"}
    assert save(signed_in, upload(signed_in, class_zip()).headers["Location"]).status_code == 303
    assert signed_in.delete("/api/v1/datasets/shapes", headers=auth).get_json() == {"deleted": "shapes"}
    assert not os.path.exists(folder)


def test_a_rename_that_fails_leaves_the_data_set_whole(signed_in, instructor_app, class_zip, monkeypatch):
    assert save(signed_in, upload(signed_in, class_zip()).headers["Location"]).status_code == 303
    folder = os.path.join(instructor_app.instance_path, "datasets", "shapes")
    before = leftovers(instructor_app)

    def refuse_rename(src, dst):
        raise OSError("disk says no")
    monkeypatch.setattr(os, "rename", refuse_rename)
    with pytest.raises(OSError):
        with instructor_app.test_request_context():
            from app.instructor.datasets import delete_dataset

            delete_dataset("shapes")
    assert leftovers(instructor_app) == before and os.path.isfile(os.path.join(folder, "dataset.json"))


@pytest.mark.parametrize("route, data, form_id, words", [
    ("/instructor/datasets/upload", {"file": (io.BytesIO(b"not a zip"), "pets.zip")}, "upload-form", "zip"),
    ("/instructor/datasets/upload", {}, "upload-form", "zip"),
    ("/instructor/datasets/folder", {"folder": "../etc"}, "folder-form", ".."),
    ("/instructor/datasets/corpus", {"file": (io.BytesIO(b"a\x00b\n"), "poem.txt")}, "corpus-form", "NUL"),
    ("/instructor/datasets/corpus/file", {"file": "missing.txt"}, "corpus-file-form", "missing.txt"),
])
def test_a_refused_upload_shows_the_data_set_page_again_with_the_refusal_beside_its_form(
        signed_in, route, data, form_id, words):
    response = signed_in.post(route + "?lang=vi", data=data, content_type="multipart/form-data")
    assert 400 <= response.status_code < 500
    page = response.get_data(as_text=True)
    assert f'id="{form_id}"' in page and f'id="{form_id}-error"' in page  # the forms, not a bare error page
    error = page.split(f'id="{form_id}-error">', 1)[1].split("</div>", 1)[0]
    assert words in error and "Traceback" not in page
    assert page.count('role="alert"') == 1
