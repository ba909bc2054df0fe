"""Inside the LSTM: the gate equations and diagram (/lstm), the measured RNN-vs-LSTM experiment
(/lstm/why), and the trace panel (heatmaps of the gates over the time steps) that the image and
text result pages include.

The heatmaps are small PNGs (one pixel per time step and unit, drawn with NumPy) placed in one
inline SVG per layer, so the picture's rows (or the words) line up with the heatmap rows (or
columns) at any zoom, with no inline script or style (CSP).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from flask import Blueprint, abort, current_app, render_template, send_from_directory
from PIL import Image

from app.i18n import MESSAGES
from app.trace import COLUMNS, SHOWN, WORDS, Trace, get_tracer, trace_image, trace_tokens

bp = Blueprint("lstm", __name__)

COMPARE_DIR = "compare_rnn"  # written by `python -m training compare-rnn` (training/compare.py)
RESULTS, PLOT = "results.json", "comparison.png"
MAX_WORDS = 60  # the text trace shows the last MAX_WORDS tokens
GATE_RGB = np.array([[255, 255, 255], [20, 60, 150]], np.float32)  # 0 -> white, 1 -> dark blue
NEG_RGB, POS_RGB = np.array([33, 102, 172], np.float32), np.array([178, 24, 43], np.float32)

# Layout of the SVG (user units): heatmaps have a fixed size whatever the number of units.
STEP = 8  # height of one time step (image) / width of one word (text, times WORD_WIDTH)
MAP_WIDTH, GAP, LABEL = 128, 14, 20
WORD_WIDTH, MAP_HEIGHT, WORD_LABEL = 44, 64, 18

MESSAGES.update({
    "nav_lstm": ("Bên trong LSTM", "Inside the LSTM"),
    "nav_why": ("Vì sao LSTM?", "Why LSTM?"),
    "lstm_heading": ("Bên trong một ô LSTM", "Inside an LSTM cell"),
    "lstm_intro": ("Một LSTM đọc chuỗi từng bước (một hàng ảnh, một từ). Ở mỗi bước, ba cổng quyết định điều gì được giữ lại trong bộ nhớ dài hạn (trạng thái ô c), điều gì được thêm vào, và điều gì được đưa ra ngoài (trạng thái ẩn h).",
                   "An LSTM reads a sequence one step at a time (an image row, a word). At every step three gates decide what to keep in its long-term memory (the cell state c), what to add to it, and what to show (the hidden state h)."),
    "equations": ("Các phương trình", "The equations"),
    "eq_legend": ("σ là hàm sigmoid (giá trị từ 0 đến 1), ⊙ là phép nhân từng phần tử, W, U, b là trọng số học được; h₀ = c₀ = 0.",
                  "σ is the sigmoid (values between 0 and 1), ⊙ the element-wise product, W, U, b the learned weights; h₀ = c₀ = 0."),
    "eq_f": ("cổng quên: giữ lại bao nhiêu phần của bộ nhớ cũ", "forget gate: how much of the old memory to keep"),
    "eq_i": ("cổng vào: thêm bao nhiêu phần của nội dung mới", "input gate: how much of the new content to add"),
    "eq_g": ("ứng viên: nội dung mới (từ −1 đến 1)", "candidate: the new content (between −1 and 1)"),
    "eq_o": ("cổng ra: đưa ra bao nhiêu phần của bộ nhớ", "output gate: how much of the memory to show"),
    "eq_c": ("trạng thái ô: bộ nhớ dài hạn, cập nhật bằng phép cộng", "cell state: the long-term memory, updated by a sum"),
    "eq_h": ("trạng thái ẩn: đầu ra của bước này", "hidden state: this step's output"),
    "diagram": ("Sơ đồ một ô LSTM", "Diagram of one LSTM cell"),
    "diagram_desc": ("Đường trên cùng là trạng thái ô c chạy qua các bước thời gian; nó chỉ bị nhân với cổng quên f và cộng thêm i⊙g, nên thông tin và gradient đi qua nhiều bước mà không bị nhân liên tục với cùng một ma trận.",
                     "The top line is the cell state c running through time; it is only multiplied by the forget gate f and added to i⊙g, so information and gradients cross many steps without being multiplied again and again by the same matrix."),
    "diagram_alt": ("Sơ đồ ô LSTM: đầu vào x_t và h_(t−1) đi vào bốn khối f, i, g, o; c_(t−1) nhân với f, cộng với i nhân g thành c_t; tanh(c_t) nhân với o thành h_t.",
                    "LSTM cell diagram: input x_t and h_(t−1) feed four blocks f, i, g, o; c_(t−1) is multiplied by f and added to i times g to give c_t; tanh(c_t) times o gives h_t."),
    "keras_order": ("Trong Keras, bốn khối trọng số nằm cạnh nhau trong một ma trận theo thứ tự i, f, c (ứng viên), o.",
                    "In Keras the four blocks of weights sit side by side in one matrix, in the order i, f, c (candidate), o."),
    "unrolled": ("Mô hình ảnh của lab, trải theo thời gian", "The lab's image model, unrolled in time"),
    "unrolled_caption": ("Cùng một ô LSTM (cùng trọng số) được dùng lại ở mỗi hàng ảnh x₁ … x₂₈; c và h được chuyển sang bước sau; sau hàng cuối, h đi vào lớp Dense softmax.",
                         "The same LSTM cell (the same weights) is reused at every image row x₁ … x₂₈; c and h are passed on to the next step; after the last row, h goes to a Dense softmax layer."),
    "build_it": ("Tự xây dựng", "Build it yourself"),
    "build_it_text": ("Mã của lab viết ô LSTM từ chính các phương trình này hai lần: bằng NumPy và bằng một lớp Keras tự viết (app/lstm_cell.py); các bài kiểm thử chứng minh cả hai cho kết quả giống keras.layers.LSTM đến 1e-5.",
                      "The lab's code writes the LSTM cell from these very equations twice: in NumPy and as a hand-written Keras layer (app/lstm_cell.py); tests prove both give the same results as keras.layers.LSTM to 1e-5."),
    "see_trace": ("Mỗi trang nhận dạng ảnh và sinh văn bản có ô “Xem bên trong LSTM”: bản đồ nhiệt của các cổng ở mỗi bước cho chính dự đoán của bạn.",
                  "Every image and text page has an “Inside the LSTM” box: heatmaps of the gates at every step of your own prediction."),
    "why_heading": ("Vì sao cần LSTM?", "Why an LSTM?"),
    "why_intro": ("Một RNN thường (SimpleRNN) cập nhật trạng thái bằng h_t = tanh(x_t W + h_(t−1) U + b). Khi lan truyền ngược qua thời gian, gradient bị nhân với U và đạo hàm của tanh ở mỗi bước: sau vài chục bước nó thường teo về 0 (gradient biến mất) hoặc phình to (gradient bùng nổ). Vì vậy RNN thường chỉ nhớ được ngắn hạn. Trạng thái ô của LSTM được cập nhật bằng phép cộng, có cổng quên điều khiển, nên tín hiệu học đi ngược được rất nhiều bước.",
                  "A plain RNN (SimpleRNN) updates its state with h_t = tanh(x_t W + h_(t−1) U + b). Going back through time, the gradient is multiplied by U and by tanh's derivative at every step: after a few dozen steps it usually shrinks towards zero (vanishing gradient) or blows up (exploding gradient). So a plain RNN has a short memory. The LSTM's cell state is updated by a sum under the forget gate's control, so the learning signal can travel back many steps."),
    "why_experiment": ("Thí nghiệm do chính lab chạy", "An experiment the lab runs itself"),
    "why_setup": ("Một SimpleRNN và một LSTM cùng {units} đơn vị, huấn luyện giống hệt nhau (cùng dữ liệu, thứ tự, Adam, tốc độ học {lr}, cắt chuẩn gradient {clip}).",
                  "A SimpleRNN and an LSTM with the same {units} units, trained exactly the same way (same data and order, Adam, learning rate {lr}, gradient norm clipped at {clip})."),
    "why_adding": ("Bài toán cộng: mỗi bước có một số ngẫu nhiên và một dấu; đáp án là tổng hai số được đánh dấu, một số nằm trong 10% đầu chuỗi. Trả lời luôn bằng 1 cho sai số bình phương ≈ {mse}. “Độ chính xác”: tỉ lệ đáp án sai không quá {tol}.",
                   "The adding problem: every step carries a random number and a marker; the answer is the sum of the two marked numbers, one of them in the first 10% of the sequence. Always answering 1 gives a squared error ≈ {mse}. “Accuracy”: the share of answers within {tol}."),
    "why_mnist": ("MNIST đọc từng hàng: 28 bước, mỗi bước 28 điểm ảnh.", "MNIST read row by row: 28 steps of 28 pixels."),
    "why_none": ("Chưa có kết quả. Chạy thí nghiệm bằng lệnh:", "No results yet. Run the experiment with:"),
    "model": ("Mô hình", "Model"),
    "test_loss": ("Mất mát trên tập kiểm tra", "Test loss"),
    "train_seconds": ("Thời gian huấn luyện (giây)", "Training time (s)"),
    "curves": ("Đường cong huấn luyện và gradient", "Training curves and gradients"),
    "compare_alt": ("Với mỗi thí nghiệm: độ chính xác và mất mát trên tập kiểm định theo epoch, và chuẩn gradient theo bước thời gian (thang log), cho SimpleRNN và LSTM.",
                    "For each experiment: validation accuracy and loss per epoch, and the gradient norm per time step (log scale), for the SimpleRNN and the LSTM."),
    "grad_heading": ("Gradient đến được từng bước", "The gradient reaching each step"),
    "grad_text": ("‖∂L/∂x_t‖: độ lớn của tín hiệu học từ đáp án (ở bước cuối) đến đầu vào ở bước t, trung bình trên {n} chuỗi. Bảng so sánh bước đầu tiên với bước cuối cùng.",
                  "‖∂L/∂x_t‖: how much of the learning signal from the answer (at the last step) reaches the input at step t, averaged over {n} sequences. The table compares the first step with the last."),
    "grad_lesson": ("Trước khi huấn luyện, cả hai mạng đều để mất tín hiệu ở các bước đầu. Huấn luyện dạy cổng quên của LSTM mở ra ở những bước cần nhớ, nên gradient đến bước đầu tiên lớn lên nhiều bậc; ở SimpleRNN nó vẫn teo dần, nên mạng không học được điều gì phụ thuộc vào đầu chuỗi.",
                    "Before training both networks lose the signal on the early steps. Training teaches the LSTM's forget gates to stay open where memory is needed, so the gradient reaching the first step grows by orders of magnitude; the SimpleRNN's keeps shrinking, so it cannot learn anything that depends on the start of the sequence."),
    "same_units_note": ("Cùng số đơn vị: LSTM có bốn bộ trọng số (i, f, g, o) nên có khoảng gấp bốn lần số tham số.",
                        "Same number of units: the LSTM has four sets of weights (i, f, g, o), so about four times the parameters."),
    "grad_first": ("Bước đầu", "First step"),
    "grad_last": ("Bước cuối", "Last step"),
    "grad_ratio": ("Đầu / cuối", "First / last"),
    "untrained_model": ("chưa huấn luyện", "untrained"),
    "trained_model": ("đã huấn luyện", "trained"),
    "params_short": ("tham số", "parameters"),
    "quick_results": ("Kết quả này là lần chạy nhanh (--quick) chỉ để kiểm thử, không có ý nghĩa.",
                      "These results come from a quick (--quick) test run and mean nothing."),
    "run_info": ("Chạy lúc {created}, {seconds} giây, lệnh:", "Run at {created}, {seconds} s, command:"),
    # The trace panel
    "trace_heading": ("Bên trong LSTM", "Inside the LSTM"),
    "trace_show": ("Xem bên trong LSTM (các cổng ở mỗi bước)", "Show inside the LSTM (the gates at every step)"),
    "trace_image_help": ("Mỗi hàng của bản đồ nhiệt là một bước thời gian, đặt ngang với hàng ảnh (hoặc cột ảnh, xoay ngang) mà LSTM đọc ở bước đó; mỗi cột là một đơn vị. Cổng f, i, o và ứng viên g cho biết ở bước này LSTM giữ lại, thêm vào và đưa ra bao nhiêu; c là bộ nhớ dài hạn, h là đầu ra.",
                         "Each heatmap row is one time step, level with the image row (or column, turned sideways) the LSTM read at that step; each column is one unit. Gates f, i, o and the candidate g show how much the LSTM kept, added and showed at that step; c is the long-term memory, h the output."),
    "trace_text_help": ("Mỗi cột là một từ (ghi bên dưới) mà LSTM vừa đọc; mỗi hàng là một đơn vị. Cổng f gần 1 nghĩa là giữ bộ nhớ, cổng i gần 1 là ghi nội dung mới, cổng o gần 1 là đưa bộ nhớ ra; c là bộ nhớ dài hạn, h là đầu ra dùng để đoán từ tiếp theo.",
                        "Each column is one word (written below) the LSTM has just read; each row is one unit. A forget gate f near 1 keeps the memory, an input gate i near 1 writes new content, an output gate o near 1 shows the memory; c is the long-term memory, h the output used to guess the next word."),
    "trace_scale": ("Màu: cổng từ 0 (trắng) đến 1 (xanh đậm); g, c, h âm là xanh, dương là đỏ (c được chia cho phân vị 99% của |c|, ghi bên cạnh).",
                    "Colours: gates from 0 (white) to 1 (dark blue); g, c, h negative in blue, positive in red (c divided by the 99th percentile of its |c|, given beside it)."),
    "trace_check": ("Đầu ra tính lại từ các phương trình khác đầu ra của mô hình tối đa {d}.",
                    "The output recomputed from the equations differs from the model's by at most {d}."),
    "trace_renet": ("Với kiến trúc ReNet, chỉ lớp BiLSTM cuối (đọc từng hàng ô ảnh) được hiển thị; hai lượt quét theo hàng và cột ô ảnh được tính nhưng không hiển thị.",
                    "For the ReNet architecture only the last BiLSTM (reading one row of patches per step) is shown; the two patch sweeps are computed but not shown."),
    "api_trace": ("Bên trong LSTM: thêm ?trace=1 (nhận dạng ảnh) hoặc \"trace\": true (sinh văn bản, không dùng với luồng) để nhận giá trị các cổng f, i, o, ứng viên g, trạng thái ô c và trạng thái ẩn h của mỗi lớp LSTM ở mỗi bước (hàng ảnh hoặc từ), và độ lệch so với đầu ra của mô hình.",
                  "Inside the LSTM: add ?trace=1 (image prediction) or \"trace\": true (text generation, not streamed) to receive the gates f, i, o, the candidate g, the cell state c and the hidden state h of every LSTM layer at every step (image row or word), and the difference from the model's output."),
    "trace_forward": ("chiều xuôi", "forward"),
    "trace_backward": ("chiều ngược", "backward"),
    "trace_axis_rows": ("bước = hàng ảnh", "step = image row"),
    "trace_axis_columns": ("bước = cột ảnh", "step = image column"),
    "trace_axis_patch_rows": ("bước = hàng ô ảnh", "step = row of patches"),
    "trace_axis_words": ("bước = từ", "step = word"),
    "trace_steps_units": ("{t} bước × {u} đơn vị", "{t} steps × {u} units"),
    "trace_unavailable": ("Không vẽ được bên trong mô hình này: {error}", "Cannot show inside this model: {error}"),
})


# ----------------------------------------------------------------------------- heatmaps
def _png_url(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8)), "RGB").save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def colour(values: np.ndarray, signed: bool) -> np.ndarray:
    """(T, U) values -> RGB: [0, 1] white→blue, or [-1, 1] blue←white→red."""
    v = np.clip(values, -1.0 if signed else 0.0, 1.0)[..., None]
    if not signed:
        return GATE_RGB[0] + (GATE_RGB[1] - GATE_RGB[0]) * v
    white = np.float32(255)
    return np.where(v < 0, white + (NEG_RGB - white) * -v, white + (POS_RGB - white) * v)


def heatmaps(values: dict[str, np.ndarray], transpose: bool) -> list[dict]:
    """One PNG data URL per shown quantity (units on columns, or on rows with `transpose`)."""
    out = []
    c_max = float(np.percentile(np.abs(values["c"]), 99)) or 1.0  # a few large cells would wash out the rest
    for key in SHOWN:
        v = values[key] / c_max if key == "c" else values[key]
        rgb = colour(v, signed=key in ("g", "c", "h"))
        out.append({"key": key, "url": _png_url(rgb.transpose(1, 0, 2) if transpose else rgb),
                    "scale": round(c_max, 3) if key == "c" else None})
    return out


def _picture(array: np.ndarray, axis: str) -> str:
    """The image the LSTM read, turned so that its time steps run down the page."""
    img = np.asarray(array, np.uint8)
    if axis == COLUMNS:
        img = img.transpose(1, 0, 2)
    rgb = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    return _png_url(rgb)


def image_panel(trace: Trace, array: np.ndarray, served: np.ndarray | None = None) -> dict:
    """Template context for templates/lstm/_trace.html of an image prediction."""
    layers, pictures = [], {}
    for lt in sorted(trace.layers, key=lambda lt: lt.axis == COLUMNS):  # rows first: the usual reading
        height = lt.steps * STEP
        if (lt.axis == COLUMNS) not in pictures:  # one picture per orientation, not per layer
            pictures[lt.axis == COLUMNS] = _picture(array, lt.axis)
        pic_h, pic_w = (array.shape[1], array.shape[0]) if lt.axis == COLUMNS else array.shape[:2]
        pic_width = round(height * pic_w / pic_h)
        maps = heatmaps(lt.values, transpose=False)
        for k, m in enumerate(maps):
            m["x"] = pic_width + GAP + k * (MAP_WIDTH + GAP)
        layers.append({"label": lt.name, "direction": lt.direction, "axis": lt.axis, "steps": lt.steps,
                       "units": lt.units, "picture": pictures[lt.axis == COLUMNS], "picture_width": pic_width,
                       "height": height, "width": pic_width + len(maps) * (MAP_WIDTH + GAP), "maps": maps})
    return _panel("image", trace, layers, served)


def image_trace(entry, array: np.ndarray, served: np.ndarray | None = None) -> tuple[Trace, dict]:
    """Trace an image task's prediction on `array` (uint8 H×W×C): the trace and its panel."""
    trace = trace_image(get_tracer(current_app, entry), array)
    return trace, image_panel(trace, array, served)


def text_ids(text_model, result: dict) -> list[int]:
    """The token ids the text model read for a generation result (seed and generated words)."""
    from app.text import EOL_ID, clean_words, tokenize_verse

    if text_model.spec.tokenizer == "syllables":
        tokens = tokenize_verse(result.get("lines") or [])
    else:
        tokens = clean_words(result.get("text", ""))
    return ([EOL_ID] + text_model.vocab.encode(tokens))[-MAX_WORDS:]


def text_panel(trace: Trace, words: list[str], served: np.ndarray | None = None) -> dict:
    """Template context for templates/lstm/_trace.html of a text generation."""
    layers = []
    for lt in trace.layers:
        width = lt.steps * WORD_WIDTH
        maps = heatmaps(lt.values, transpose=True)
        for k, m in enumerate(maps):
            m["y"] = k * (MAP_HEIGHT + GAP)
        layers.append({"label": lt.name, "direction": lt.direction, "axis": WORDS, "steps": lt.steps,
                       "units": lt.units, "width": width + LABEL, "height": len(maps) * (MAP_HEIGHT + GAP) + WORD_LABEL,
                       "words": [{"x": LABEL + (t + 0.5) * WORD_WIDTH, "text": w[:9]} for t, w in enumerate(words)],
                       "maps": maps})
    return _panel("text", trace, layers, served)


def text_trace(entry, result: dict) -> tuple[Trace, dict]:
    """Trace the text model over the seed and generated words of `result`: trace and panel."""
    model = entry.text_model
    ids = text_ids(model, result)
    trace = trace_tokens(get_tracer(current_app, entry), ids)
    served = np.exp(model.feed(ids)[0][0])  # the serving path's next-word distribution
    words = ["↵" if i == 2 else model.vocab.tokens[i] for i in ids]
    return trace, text_panel(trace, words, served)


def wants_trace(value) -> bool:
    """A request's `trace` flag: JSON true, or "1"/"true"/"on" from a form or query string."""
    return value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "on", "yes"))


def image_trace_context(entry, array: np.ndarray) -> dict:
    """{"trace_panel": ...} for an image result page (or {"trace_error": ...} for a model the
    tracer does not support), with the served model's output to compare against."""
    try:
        served = entry.predict(np.asarray(array, np.float32)[None])[0]
        return {"trace_panel": image_trace(entry, array, served)[1]}
    except ValueError as exc:
        return {"trace_error": str(exc)}


def text_trace_context(entry, result: dict) -> dict:
    """{"trace_panel": ...} (or {"trace_error": ...}) for a text result page."""
    try:
        return {"trace_panel": text_trace(entry, result)[1]}
    except ValueError as exc:
        return {"trace_error": str(exc)}


def image_trace_json(entry, array: np.ndarray) -> dict:
    """The API's `trace` for an image prediction: every recorded layer's values per time step."""
    served = entry.predict(np.asarray(array, np.float32)[None])[0]
    trace = trace_image(get_tracer(current_app, entry), array)
    return {**trace.to_dict(), "difference_from_served": float(np.abs(trace.output[0] - served).max())}


def text_trace_json(entry, result: dict) -> dict:
    """The API's `trace` for a generation: the words read and every layer's values per word."""
    model = entry.text_model
    ids = text_ids(model, result)
    trace = trace_tokens(get_tracer(current_app, entry), ids)
    served = np.exp(model.feed(ids)[0][0])
    body = trace.to_dict()
    body.pop("output")  # a vocabulary-wide distribution per word: too large to be useful here
    return {**body, "tokens": [model.vocab.tokens[i] for i in ids],
            "difference_from_served": float(np.abs(trace.output[0, -1] - served).max())}


def _panel(kind: str, trace: Trace, layers: list[dict], served) -> dict:
    final = trace.output[0] if trace.output.ndim == 2 else trace.output[0, -1]
    diff = None if served is None else float(np.abs(final - np.asarray(served).reshape(final.shape)).max())
    return {"kind": kind, "layers": layers, "difference": diff, "renet": any(l["axis"] == "patch_rows" for l in layers),
            "step": STEP, "map_width": MAP_WIDTH, "map_height": MAP_HEIGHT, "label": LABEL}


# ----------------------------------------------------------------------------- pages
@bp.get("/lstm")
def lstm_page():
    """The gate equations and the architecture diagram."""
    return render_template("lstm/lstm.html")


def read_results() -> dict | None:
    """models/compare_rnn/results.json, or None when the experiment has not been run."""
    import json

    path = Path(current_app.config["MODELS_DIR"]) / COMPARE_DIR / RESULTS
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and isinstance(results.get("experiments"), dict) else None


def gradient_rows(exp: dict) -> list[dict]:
    """Per model, untrained and trained: gradient norm at the first and last step, and their ratio."""
    rows = []
    for kind, m in exp["models"].items():
        norms = m.get("grad_norms") or []
        for when, g in (("untrained_model", norms[0] if norms else None), ("trained_model", norms[-1] if norms else None)):
            if g:
                rows.append({"kind": kind, "when": when, "first": g[0], "last": g[-1],
                             "ratio": g[0] / g[-1] if g[-1] else None})
    return rows


def curve_svg(exp: dict, key: str, width: int = 300, height: int = 150, log: bool = False,
              shared_x: bool = False) -> dict:
    """Polylines of `key` per model (history key, or "grad" for the trained gradient norms);
    `shared_x`: step i at the same x in every series (series of different lengths compared)."""
    series = {}
    for kind, m in exp["models"].items():
        values = m["grad_norms"][-1] if key == "grad" else m["history"].get(key, [])
        values = [float(v) for v in values if v is not None and np.isfinite(v) and (not log or v > 0)]
        if values:
            series[kind] = np.log10(values) if log else np.array(values)
    if not series:
        return {"lines": [], "width": width, "height": height}
    lo = min(float(v.min()) for v in series.values())
    hi = max(float(v.max()) for v in series.values())
    span = hi - lo or 1.0
    lines = []
    n = max(len(v) for v in series.values())
    for kind, v in series.items():
        if shared_x:
            xs = np.arange(len(v)) * width / (n - 1) if n > 1 else np.array([width / 2])
        else:
            xs = np.linspace(0, width, len(v)) if len(v) > 1 else np.array([width / 2])
        ys = height - (v - lo) / span * height
        lines.append({"kind": kind, "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))})
    fmt = (lambda x: f"{10 ** x:.2g}") if log else (lambda x: f"{x:.3g}")
    return {"lines": lines, "width": width, "height": height, "lo": fmt(lo), "hi": fmt(hi), "n": max(len(v) for v in series.values())}


@bp.get("/lstm/why")
def why_page():
    """The RNN-vs-LSTM experiment from its saved results, with the explanation."""
    results = read_results()
    charts = {}
    if results:
        for name, exp in results["experiments"].items():
            charts[name] = {"accuracy": curve_svg(exp, "val_accuracy"), "loss": curve_svg(exp, "val_loss"),
                            "grad": curve_svg(exp, "grad", log=True), "grad_rows": gradient_rows(exp)}
    plot = Path(current_app.config["MODELS_DIR"]) / COMPARE_DIR / PLOT
    return render_template("lstm/why.html", results=results, charts=charts, has_plot=plot.is_file())


@bp.get("/lstm/why/comparison.png")
def comparison_plot():
    """The experiment's plot (matplotlib, written with the results)."""
    folder = Path(current_app.config["MODELS_DIR"]) / COMPARE_DIR
    if not (folder / PLOT).is_file():
        abort(404)
    return send_from_directory(folder, PLOT, mimetype="image/png", max_age=3600)
