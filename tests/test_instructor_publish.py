"""Publishing a finished run as a served task: atomically into the models folder, a task that
exists is replaced only with confirmation and kept in <instance>/replaced/, unpublish; the model
store's hot reload (new, changed and removed cards, without a restart), including in a second
app process that was already running."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.images import png_bytes
from helpers.instructor import INSTRUCTOR_RUN_ID as RUN_ID

ROOT = Path(__file__).resolve().parent.parent


def publish_form(client, slug="shapes_task", **kw):
    data = {"slug": slug, "title_en": "Red or blue", "title_vi": "Đỏ hay xanh", "classes": "blue|Xanh\nred|Đỏ", **kw}
    return client.post(f"/instructor/runs/{RUN_ID}/publish?lang=en", data=data)


def task_slugs(client) -> dict:
    return {t["slug"]: t for t in client.get("/api/v1/tasks").get_json()["tasks"]}


def test_publish_serves_the_run_without_a_restart(signed_in, instructor_app, finished_lab_run):
    assert "shapes_task" not in task_slugs(signed_in)
    assert signed_in.get(f"/instructor/runs/{RUN_ID}/publish").status_code == 200
    response = publish_form(signed_in)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    task = task_slugs(signed_in)["shapes_task"]
    assert task["status"] == "ready" and task["engine"] == "litert"
    assert task["title_en"] == "Red or blue" and task["title_vi"] == "Đỏ hay xanh"
    assert task["classes"] == [{"en": "blue", "vi": "Xanh"}, {"en": "red", "vi": "Đỏ"}]
    answer = signed_in.post("/api/v1/tasks/shapes_task/predict?lang=vi",
                            data={"file": (io.BytesIO(png_bytes((0, 0, 250))), "x.png")})
    assert answer.status_code == 200 and answer.get_json()["prediction"]["label"] in ("Xanh", "Đỏ")
    card = json.loads((Path(instructor_app.config["MODELS_DIR"]) / "shapes_task" / "card.json").read_text())
    assert card["published"]["run"] == RUN_ID and card["published"]["by"] == "teacher"
    assert not [p for p in os.listdir(instructor_app.config["MODELS_DIR"]) if p.startswith(".publish")]
    from app.records import Run, db

    with instructor_app.app_context():
        assert db.session.get(Run, RUN_ID).published_slug == "shapes_task"
    assert "shapes_task" in signed_in.get("/?lang=en").get_data(as_text=True)  # on the home page


def test_replacing_needs_confirmation_and_keeps_the_previous_model(signed_in, instructor_app, finished_lab_run):
    assert publish_form(signed_in).status_code == 303
    again = publish_form(signed_in, title_en="Second")
    assert again.status_code == 409 and 'id="confirm"' in again.get_data(as_text=True)
    assert task_slugs(signed_in)["shapes_task"]["title_en"] == "Red or blue"  # untouched
    assert publish_form(signed_in, title_en="Second", confirm="yes").status_code == 303
    assert task_slugs(signed_in)["shapes_task"]["title_en"] == "Second"
    kept = list((Path(instructor_app.instance_path) / "replaced").glob("shapes_task-*/card.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["task"]["title_en"] == "Red or blue"


@pytest.mark.parametrize("form,status,words", [
    ({"slug": "mnist", "confirm": "yes"}, 409, "built-in task"),
    ({"slug": "Bad slug"}, 400, "lowercase"),
    ({"classes": "only one"}, 400, "exactly 2 class names"),
    ({"title_vi": ""}, 400, "title"),
])
def test_publish_refusals(signed_in, instructor_app, finished_lab_run, form, status, words):
    response = publish_form(signed_in, **form)
    assert response.status_code == status and words in response.get_data(as_text=True)
    assert set(task_slugs(signed_in)) == {"mnist", "fashion_mnist", "cifar10", "cats_dogs", "faces_gender",
                                          "nyt_headlines", "kieu"}
    assert Path(instructor_app.config["MODELS_DIR"], "mnist", "card.json").is_file()


def test_only_finished_runs_are_published(signed_in, instructor_app, finished_lab_run):
    from app.records import Run, db

    with instructor_app.app_context():
        db.session.get(Run, RUN_ID).status = "running"
        db.session.commit()
    assert publish_form(signed_in).status_code == 409


def test_api_publish_and_unpublish(instructor_app, add_instructor, finished_lab_run):
    add_instructor(instructor_app)
    token = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher"]).output.strip()
    client, auth = instructor_app.test_client(), {"Authorization": f"Bearer {token}"}
    body = {"slug": "colours", "title_en": "Colours", "title_vi": "Màu sắc",
            "classes": [{"en": "blue", "vi": "Xanh"}, {"en": "red", "vi": "Đỏ"}]}
    response = client.post(f"/api/v1/runs/{RUN_ID}/publish", json=body, headers=auth)
    assert response.status_code == 201 and response.get_json()["published"] == "colours"
    assert client.post(f"/api/v1/runs/{RUN_ID}/publish", json=body, headers=auth).status_code == 409
    assert client.post(f"/api/v1/runs/{RUN_ID}/publish", json={**body, "confirm": True}, headers=auth).status_code == 201
    assert client.post("/api/v1/runs/nosuchrun/publish", json=body, headers=auth).status_code == 404
    assert client.post(f"/api/v1/runs/{RUN_ID}/publish", json={**body, "classes": ["x"]}, headers=auth).status_code == 400
    assert task_slugs(client)["colours"]["status"] == "ready"
    gone = client.delete("/api/v1/tasks/colours", headers=auth)
    assert gone.status_code == 200 and "colours" not in task_slugs(client)
    assert Path(gone.get_json()["replaced"], "card.json").is_file()  # recoverable
    assert client.delete("/api/v1/tasks/colours", headers=auth).status_code == 404
    shipped = client.delete("/api/v1/tasks/mnist", headers=auth)
    assert shipped.status_code == 409 and task_slugs(client)["mnist"]["status"] == "ready"
    assert client.delete("/api/v1/tasks/mnist?confirm=1", headers=auth).status_code == 200
    assert task_slugs(client)["mnist"]["status"] == "missing"  # a built-in task stays listed, unavailable
    assert client.delete("/api/v1/tasks/colours").status_code == 401


def test_console_unpublish_and_report(signed_in, instructor_app, finished_lab_run):
    assert publish_form(signed_in).status_code == 303
    page = signed_in.get("/instructor/tasks").get_data(as_text=True)
    assert 'id="task-shapes_task"' in page and RUN_ID in page
    assert signed_in.post("/instructor/tasks/shapes_task/unpublish").status_code == 303
    assert "shapes_task" not in task_slugs(signed_in)
    report = signed_in.get(f"/instructor/runs/{RUN_ID}/report?lang=en").get_data(as_text=True)
    assert 'id="confusion"' in report and "90.00%" in report and "seed" in report and "<svg" in report


# ----------------------------------------------------------------------------- hot reload
def test_refresh_store_sees_new_changed_and_removed_cards(tmp_path, tiny_run_folder):
    from app.modelstore import Engines, ModelStore, Watch, card_signature, refresh_store

    models = tmp_path / "models"
    models.mkdir()
    store = ModelStore(models, Engines(jit=False)).load()
    watch = Watch(interval=5.0, signature=card_signature(models), checked=0.0)
    assert RUN_ID not in store.entries
    shutil.copytree(tiny_run_folder, models / RUN_ID)
    assert refresh_store(store, watch, now=1.0) == []  # not due yet: at most every 5 s
    assert refresh_store(store, watch, now=6.0) == [RUN_ID]
    assert store.get(RUN_ID).available
    card = json.loads((models / RUN_ID / "card.json").read_text())
    card["task"]["title_en"] = "Renamed"
    (models / RUN_ID / "card.json").write_text(json.dumps(card))
    assert refresh_store(store, watch, now=12.0) == [RUN_ID]
    assert store.get(RUN_ID).spec.title_en == "Renamed"
    assert refresh_store(store, watch, now=18.0) == []  # nothing changed: nothing reloaded
    shutil.rmtree(models / RUN_ID)
    assert refresh_store(store, watch, now=24.0) == [RUN_ID]
    assert RUN_ID not in store.entries
    shutil.rmtree(models / "mnist", ignore_errors=True)


SERVE = """
import sys
from werkzeug.serving import make_server
from app import create_app
app = create_app({"TESTING": True, "SECRET_KEY": "test", "MODELS_DIR": sys.argv[1], "INSTANCE_PATH": sys.argv[2],
                  "MODELS_RELOAD_SECONDS": 0.5})
server = make_server("127.0.0.1", 0, app, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def start_second_process(models: str, instance: str) -> tuple[subprocess.Popen, str]:
    """Another app process over the same models folder (like a second gunicorn worker)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, models, instance], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        pytest.fail("the second app process did not start")
    return proc, f"http://127.0.0.1:{port}"


def predict_over_http(base: str, slug: str) -> tuple[int, dict]:
    """POST a picture to /api/v1/tasks/<slug>/predict of a running server."""
    boundary = "----lstmlab"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png_bytes((250, 0, 0)) + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/api/v1/tasks/{slug}/predict?lang=en", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_for_status(base: str, slug: str, want: int, seconds: float = 30.0) -> dict:
    """Poll the second process until predict answers `want` (hot reload is at most a few s)."""
    deadline = time.monotonic() + seconds
    while True:
        status, body = predict_over_http(base, slug)
        if status == want or time.monotonic() > deadline:
            assert status == want, (status, body)
            return body
        time.sleep(0.3)


@pytest.mark.slow
def test_a_second_process_already_running_serves_the_published_task(signed_in, instructor_app, finished_lab_run):
    proc, base = start_second_process(instructor_app.config["MODELS_DIR"], instructor_app.instance_path)
    try:
        wait_for_status(base, "shapes_task", 404)
        assert publish_form(signed_in).status_code == 303
        body = wait_for_status(base, "shapes_task", 200)
        assert body["prediction"]["label_vi"] in ("Xanh", "Đỏ") and body["task"] == "shapes_task"
        assert signed_in.post("/instructor/tasks/shapes_task/unpublish").status_code == 303
        wait_for_status(base, "shapes_task", 404)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture
def e2e_stack(tiny_models_dir):
    """ENGINE's LabStack (real gunicorn and Huey consumer processes) on its own folder, with a
    private copy of the tiny models the processes serve and the instructor publishes into."""
    import tempfile

    from helpers.lab import LabStack

    folder = Path(tempfile.mkdtemp(prefix="lstmlab-instructor-e2e-"))
    stack = LabStack(folder)
    shutil.copytree(tiny_models_dir, folder / "models")
    stack.env.update(FLASK_MODELS_DIR=str(folder / "models"), FLASK_MODELS_RELOAD_SECONDS="0.5")
    yield stack
    stack.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_end_to_end_instructor_flow(e2e_stack, make_app):
    """CLI account -> sign in -> upload a zip made here -> a tiny run trained by a real consumer
    through the queue -> publish -> classify through a gunicorn process that was already running
    before the task existed (hot reload, no restart)."""
    import requests

    from helpers.images import make_zip
    from helpers.instructor import INSTRUCTOR_PASSWORD

    stack = e2e_stack
    stack.web()  # the second app process, serving since before the task existed
    assert requests.post(f"{stack.web_url}/api/v1/tasks/red_blue/predict", timeout=10,
                         files={"file": ("x.png", png_bytes(), "image/png")}).status_code == 404
    app = make_app(stack.instance.parent / "models", INSTANCE_PATH=str(stack.instance), MODELS_RELOAD_SECONDS=0)
    result = app.test_cli_runner().invoke(args=["instructor", "add", "teacher"],
                                          input=f"{INSTRUCTOR_PASSWORD}\n{INSTRUCTOR_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD}).status_code == 302

    files = {f"colours/red/{i}.png": png_bytes((200 + i, 30, 30), size=(20, 20)) for i in range(24)}
    files.update({f"colours/blue/{i}.png": png_bytes((30, 30, 200 + i), size=(20, 20)) for i in range(24)})
    staged = client.post("/instructor/datasets/upload", content_type="multipart/form-data",
                         data={"file": (io.BytesIO(make_zip(files)), "colours.zip")})
    assert staged.status_code == 303
    assert client.get(staged.headers["Location"]).get_data(as_text=True).count('class="thumb"') == 16
    saved = client.post(staged.headers["Location"], data={"slug": "colours", "title_en": "Colours",
                                                          "title_vi": "Màu", "image_size": "16", "colour": "rgb"})
    assert saved.status_code == 303

    consumer = stack.consumer()
    submitted = client.post("/api/v1/runs", json={"dataset": "colours", "recipe": {"units": 8, "layers": 1},
                                                  "epochs": 2, "batch_size": 16, "nickname": "teacher"})
    assert submitted.status_code == 202, submitted.get_json()
    run_id = submitted.get_json()["id"]
    run = stack.wait_status(run_id, ("finished", "failed"), seconds=240)
    assert run["status"] == "finished", (run["error"], stack.log("consumer")[-3000:])
    assert consumer.poll() is None

    console = client.get("/instructor/?lang=en").get_data(as_text=True)
    assert f'id="run-{run_id}"' in console and "colours" in console
    form = {"slug": "red_blue", "title_en": "Red or blue", "title_vi": "Đỏ hay xanh", "classes": "blue|Xanh\nred|Đỏ"}
    published = client.post(f"/instructor/runs/{run_id}/publish?lang=en", data=form)
    from app.instructor.chance import held_out

    figures = held_out(run["metrics"], 2)  # a tiny split: the binomial test decides whether to ask
    print(f"e2e run: {figures.correct} of {figures.n} test images, p = {figures.p_value:.4f}")
    if not figures.clearly_above_chance:
        assert published.status_code == 409 and "not clearly above chance" in published.get_data(as_text=True)
        published = client.post(f"/instructor/runs/{run_id}/publish", data={**form, "confirm_chance": "yes"})
    assert published.status_code == 303, published.get_data(as_text=True)[:500]

    deadline = time.monotonic() + 30
    while True:
        answer = requests.post(f"{stack.web_url}/api/v1/tasks/red_blue/predict?lang=vi", timeout=10,
                               files={"file": ("x.png", png_bytes((220, 30, 30), size=(20, 20)), "image/png")})
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["task"] == "red_blue" and body["prediction"]["label"] in ("Xanh", "Đỏ")
    assert {t["slug"] for t in requests.get(f"{stack.web_url}/api/v1/tasks", timeout=10).json()["tasks"]} >= {"red_blue"}


# ----------------------------------------------------------------------------- the run console
def add_run(app, run_id: str, status: str, dataset: str = "shapes", nickname: str = "Bình") -> None:
    from app.records import Run, db

    with app.app_context():
        db.session.add(Run(id=run_id, dataset=dataset, nickname=nickname, status=status, owner="someone-else",
                           recipe={"reading": "rows", "cell": "gru", "units": 16, "layers": 2},
                           settings={"epochs": 3, "seed": 7}, metrics={}))
        db.session.commit()


def run_status(app, run_id: str):
    from app.records import Run, db

    with app.app_context():
        run = db.session.get(Run, run_id)
        return None if run is None else (run.status, run.cancel_requested)


def test_console_lists_cancels_requeues_and_deletes_runs(signed_in, instructor_app, finished_lab_run):
    add_run(instructor_app, "00000000000a", "queued")
    add_run(instructor_app, "00000000000b", "running")
    add_run(instructor_app, "00000000000c", "failed", dataset="mnist")
    page = signed_in.get("/instructor/?lang=en").get_data(as_text=True)
    for run_id in (finished_lab_run, "00000000000a", "00000000000b", "00000000000c"):
        assert f'id="run-{run_id}"' in page
    assert "Bình" in page and "GRU, 16 units × 2 layers" in page
    assert 'id="run-00000000000c"' not in signed_in.get("/instructor/?dataset=shapes").get_data(as_text=True)
    assert 'id="run-00000000000a"' not in signed_in.get("/instructor/?status=failed").get_data(as_text=True)

    assert signed_in.post("/instructor/runs/00000000000a/cancel").status_code == 303
    assert run_status(instructor_app, "00000000000a") == ("cancelled", True)
    assert signed_in.post("/instructor/runs/00000000000b/cancel").status_code == 303
    assert run_status(instructor_app, "00000000000b") == ("running", True)  # its consumer stops it
    assert signed_in.post("/instructor/runs/00000000000b/delete").status_code == 409  # cancel first
    assert signed_in.post(f"/instructor/runs/{finished_lab_run}/requeue").status_code == 409

    assert signed_in.post("/instructor/runs/00000000000c/requeue").status_code == 303
    assert run_status(instructor_app, "00000000000c") == ("queued", False)
    from app.lab import queue as lab_queue

    assert lab_queue.pending_count() >= 1  # on the queue again (no consumer in this test)

    folder = Path(instructor_app.instance_path) / "runs" / finished_lab_run
    assert folder.is_dir()
    assert signed_in.post(f"/instructor/runs/{finished_lab_run}/delete").status_code == 303
    assert run_status(instructor_app, finished_lab_run) is None and not folder.exists()
    assert signed_in.post("/instructor/runs/nosuchrun/delete").status_code == 404


def test_csv_export_of_a_data_set(signed_in, instructor_app, finished_lab_run):
    import csv

    add_run(instructor_app, "00000000000d", "failed", nickname="=HYPERLINK(\"http://x\")")
    add_run(instructor_app, "00000000000e", "finished", dataset="other")
    response = signed_in.get("/instructor/datasets/shapes/runs.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {r["id"] for r in rows} == {finished_lab_run, "00000000000d"}  # every status, this data set only
    bad = next(r for r in rows if r["id"] == "00000000000d")
    assert bad["nickname"].startswith("'=")  # a spreadsheet will not run it as a formula
    good = next(r for r in rows if r["id"] == finished_lab_run)
    assert good["test_accuracy"] == "0.9" and good["units"] == "8" and good["seed"] == "3"
