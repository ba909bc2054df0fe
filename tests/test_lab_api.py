"""The runs API in the web process: bad input and limits (400/429, bilingual, nothing queued),
ownership, reading records, events, and no TensorFlow in the web process. No consumer runs
here: the end-to-end training is in test_lab_queue.py and test_lab_faults.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from app.lab import queue as lab_queue
from app.records import Run, db

GOOD = {"dataset": "mnist", "recipe": {"units": 8, "layers": 1}, "epochs": 1, "subset": 256}


@pytest.fixture
def api_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app (records, queue) per test, with small limits."""
    return make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL="", LAB_RUNS_PER_BROWSER=2, LAB_RUNS_PER_CLIENT=3, LAB_QUEUE_LENGTH=4)


def counts(app) -> tuple[int, int]:
    """(run records, tasks waiting in the queue)."""
    with app.app_context():
        lab_queue.init_app(app)
        return db.session.query(Run).count(), lab_queue.pending_count()


def assert_bilingual(response, status: int):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["status"] == status and body["error_en"] and body["error_vi"]
    assert body["error"] in (body["error_en"], body["error_vi"])
    return body


@pytest.mark.parametrize("payload", [
    {"dataset": "no_such_set"},
    {**GOOD, "epochs": 0},
    {**GOOD, "epochs": 10**6},
    {**GOOD, "recipe": {"units": "many"}},
    {**GOOD, "recipe": {"cell": "transformer"}},
    {**GOOD, "recipe": {"units": 512, "layers": 4, "bidirectional": True, "reading": "rows_cols"}},  # too big
    {**GOOD, "learning_rate": "fast"},
    {**GOOD, "recipe": {"units": "²"}},  # a Unicode digit: str.isdigit() says yes, int() says no
    {**GOOD, "recipe": {"units": "+-8"}},
    {**GOOD, "seed": "9" * 5000},  # past int()'s digit limit
    {**GOOD, "epochs": "١"},  # an Arabic-Indic one
    {**GOOD, "surprise": 1},
    [1, 2, 3],
    "not json",
])
def test_bad_input_is_refused_and_nothing_queued(api_app, payload):
    client = api_app.test_client()
    if isinstance(payload, str):
        response = client.post("/api/v1/runs", data=payload, content_type="application/json")
    else:
        response = client.post("/api/v1/runs", json=payload)
    assert_bilingual(response, 400)
    assert counts(api_app) == (0, 0)


def test_submit_queues_one_task_and_reads_back(api_app):
    client = api_app.test_client()
    response = client.post("/api/v1/runs", json={**GOOD, "nickname": "  Lan  "})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["queue_position"] == 1 and len(body["id"]) == 12
    assert response.headers["Location"] == body["links"]["self"]
    assert counts(api_app) == (1, 1)
    run = client.get(f"/api/v1/runs/{body['id']}").get_json()
    assert run["nickname"] == "Lan" and run["recipe"]["units"] == 8 and run["settings"]["subset"] == 256
    assert run["history"] == [] and run["metrics"] == {} and run["params"] > 0
    assert "owner" not in run and "client" not in run  # never shown
    listed = client.get("/api/v1/runs?dataset=mnist").get_json()
    assert [r["id"] for r in listed["runs"]] == [body["id"]]
    assert client.get("/api/v1/runs?dataset=cifar10").get_json()["runs"] == []
    mine = api_app.test_client().get("/api/v1/runs?mine=1").get_json()
    assert mine["runs"] == []  # another browser has none


def test_limits_per_browser_per_address_and_queue(api_app):
    """2 per browser, 3 per client address, 4 in the whole queue: 429 with the position to expect."""
    first, second = api_app.test_client(), api_app.test_client()
    for _ in range(2):
        assert first.post("/api/v1/runs", json=GOOD).status_code == 202
    body = assert_bilingual(first.post("/api/v1/runs", json=GOOD), 429)
    assert body["queue_position"] == 3
    assert counts(api_app) == (2, 2)
    # a fresh cookie (a new browser) from the same address: allowed up to the per-address limit
    assert second.post("/api/v1/runs", json=GOOD).status_code == 202
    body = assert_bilingual(second.post("/api/v1/runs", json=GOOD), 429)
    assert "address" in body["error_en"] and body["queue_position"] == 4
    # the whole queue's cap holds for another address too
    other = api_app.test_client()
    assert other.post("/api/v1/runs", json=GOOD, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 202
    body = assert_bilingual(other.post("/api/v1/runs", json=GOOD, environ_base={"REMOTE_ADDR": "10.0.0.3"}), 429)
    assert "queue is full" in body["error_en"] and body["queue_position"] == 5
    assert counts(api_app) == (4, 4)


def test_forged_cookie_gets_a_new_owner(api_app):
    client = api_app.test_client()
    client.set_cookie("lab_owner", "forged-value")
    response = client.post("/api/v1/runs", json=GOOD)
    assert response.status_code == 202
    cookie = client.get_cookie("lab_owner")
    assert cookie is not None and cookie.value != "forged-value"


def test_only_the_owner_cancels(api_app):
    owner, stranger = api_app.test_client(), api_app.test_client()
    run_id = owner.post("/api/v1/runs", json=GOOD).get_json()["id"]
    assert_bilingual(stranger.post(f"/api/v1/runs/{run_id}/cancel"), 403)
    response = owner.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 202 and response.get_json()["status"] == "cancelled"
    assert_bilingual(owner.post(f"/api/v1/runs/{run_id}/cancel"), 409)  # already ended
    # a cancelled run frees its place in the browser's limit
    assert owner.post("/api/v1/runs", json=GOOD).status_code == 202
    assert_bilingual(stranger.delete(f"/api/v1/runs/{run_id}"), 403)
    assert owner.delete(f"/api/v1/runs/{run_id}").status_code == 204
    assert_bilingual(owner.get(f"/api/v1/runs/{run_id}"), 404)


def test_unknown_and_unfinished_runs(api_app):
    client = api_app.test_client()
    assert_bilingual(client.get("/api/v1/runs/ffffffffffff"), 404)
    assert_bilingual(client.get("/api/v1/runs/" + "x" * 300), 404)
    run_id = client.post("/api/v1/runs", json=GOOD).get_json()["id"]
    assert_bilingual(client.post(f"/api/v1/runs/{run_id}/predict", data={}), 409)
    assert_bilingual(client.get(f"/api/v1/runs/{run_id}/card"), 409)


def test_events_stream_ends_with_the_final_status(api_app):
    client = api_app.test_client()
    run_id = client.post("/api/v1/runs", json=GOOD).get_json()["id"]
    client.post(f"/api/v1/runs/{run_id}/cancel")
    response = client.get(f"/api/v1/runs/{run_id}/events")
    assert response.mimetype == "text/event-stream"
    text = response.get_data(as_text=True)
    assert "event: status" in text
    data = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert data[-1]["status"] == "cancelled" and data[-1]["id"] == run_id


def test_finished_run_predicts_with_its_own_litert_model(lab_app, finished_run, mnist_png):
    run_id = finished_run()
    client = lab_app.test_client()
    png, _ = mnist_png(3)
    response = client.post(f"/api/v1/runs/{run_id}/predict", data={"file": (__import__("io").BytesIO(png), "d.png")})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["run"] == run_id and len(body["top"]) == 5 and body["task"] == "mnist"
    assert_bilingual(client.post(f"/api/v1/runs/{run_id}/predict", data={}), 400)  # no file


def test_web_process_never_imports_tensorflow(tiny_models_dir, tmp_path):
    """Submit, poll, read events and classify in a fresh web process: TensorFlow never loads."""
    script = textwrap.dedent(f"""
        import sys, json
        from app import create_app
        app = create_app({{"TESTING": True, "SECRET_KEY": "t", "MODELS_DIR": {str(tiny_models_dir)!r},
                          "INSTANCE_PATH": {str(tmp_path / "instance")!r}}})
        c = app.test_client()
        r = c.post("/api/v1/runs", json={json.dumps(GOOD)})
        assert r.status_code == 202, r.get_data(as_text=True)
        run_id = r.get_json()["id"]
        for _ in range(3):
            assert c.get("/api/v1/runs/" + run_id).status_code == 200
        c.get("/api/v1/runs?dataset=mnist")
        c.post("/api/v1/runs/" + run_id + "/cancel")
        c.get("/api/v1/runs/" + run_id + "/events").get_data()
        print(json.dumps({{"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"tensorflow": False, "keras": False}


DEEP_JSON = "[" * 100_000 + "]" * 100_000


def test_json_nested_too_deep_is_a_bilingual_400_on_every_api_write(api_app):
    """Every API route that takes a body answers a 100,000-deep JSON array with a 4xx, never a 500."""
    client = api_app.test_client()
    rules = [r for r in api_app.url_map.iter_rules() if r.rule.startswith("/api/")
             and r.methods & {"POST", "PUT", "PATCH"}]
    assert any(r.rule == "/api/v1/runs" for r in rules)
    for rule in rules:
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "x").replace(f"<string:{arg}>", "x")
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH"}):
            response = client.open(url, method=method, data=DEEP_JSON, content_type="application/json")
            assert 400 <= response.status_code < 500, (method, url, response.status_code)
    assert_bilingual(client.post("/api/v1/runs", data=DEEP_JSON, content_type="application/json"), 400)
