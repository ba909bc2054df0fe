"""Vietnamese and English: the current language and every message of the web app in both.

A small dictionary instead of Flask-Babel: the app has two languages and a few hundred words,
so a table where each key holds its Vietnamese and English text side by side keeps them in step
(a test checks every key the templates use exists) without a .po/.mo compile step.

The language comes from `?lang=` (then remembered in a cookie), else the cookie, else
`DEFAULT_LANGUAGE` (Vietnamese).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, current_app, g, request
from flask_babel import Babel, gettext

from app.errors import InvalidInput

COOKIE = "lang"

# key: (Vietnamese, English)
MESSAGES: dict[str, tuple[str, str]] = {
    # Layout
    "site_title": ("Phòng thí nghiệm LSTM", "LSTM Lab"),
    "tagline": ("Mạng LSTM đọc ảnh từng hàng và viết văn bản từng từ", "LSTM networks that read images row by row and write text word by word"),
    "nav_home": ("Trang chủ", "Home"),
    "nav_api": ("API", "API"),
    "skip_to_content": ("Bỏ qua, tới nội dung chính", "Skip to main content"),
    "language": ("Ngôn ngữ", "Language"),
    "switch_language": ("English", "Tiếng Việt"),
    "switch_language_label": ("Chuyển sang tiếng Anh", "Switch to Vietnamese"),
    "footer": ("Ứng dụng không lưu gì giữa các yêu cầu: ảnh và văn bản bạn gửi chỉ nằm trong bộ nhớ khi xử lý.",
               "The app keeps nothing between requests: what you send stays in memory only while it is processed."),
    # Home
    "home_heading": ("Các bài toán", "Tasks"),
    "home_intro": ("Mỗi thẻ là một mô hình LSTM đã huấn luyện. Hãy thử với ảnh hoặc câu của bạn, rồi xem thẻ mô hình để biết nó được huấn luyện thế nào.",
                   "Each card is a trained LSTM model. Try it with your own picture or words, then read its model card to see how it was trained."),
    "kind_image": ("Ảnh", "Image"),
    "kind_text": ("Văn bản", "Text"),
    "try_it": ("Dùng thử", "Try it"),
    "model_card": ("Thẻ mô hình", "Model card"),
    "test_accuracy": ("Độ chính xác trên tập kiểm tra", "Test accuracy"),
    "test_perplexity": ("Độ bối rối (perplexity) trên tập kiểm tra", "Test perplexity"),
    "not_measured": ("chưa đo", "not measured"),
    "unavailable": ("Chưa sẵn sàng", "Not available"),
    "unavailable_missing": ("Mô hình này chưa được huấn luyện.", "This model has not been trained yet."),
    "unavailable_error": ("Không nạp được mô hình này (tệp thiếu hoặc hỏng).", "This model could not be loaded (a file is missing or damaged)."),
    "train_it_with": ("Huấn luyện nó bằng lệnh:", "Train it with:"),
    # Image page
    "image_heading_help": ("Chọn một ảnh, kéo thả vào đây, dán (Ctrl+V) hoặc vẽ, rồi bấm Nhận dạng.",
                           "Choose a picture, drag it here, paste it (Ctrl+V) or draw, then press Classify."),
    "choose_image": ("Ảnh", "Picture"),
    "drop_here": ("Kéo thả ảnh vào đây hoặc dán bằng Ctrl+V", "Drop a picture here or paste it with Ctrl+V"),
    "classify": ("Nhận dạng", "Classify"),
    "draw_heading": ("Hoặc vẽ", "Or draw"),
    "draw_help": ("Vẽ bằng chuột, bút hoặc ngón tay. Bàn phím: chọn ảnh bằng nút ở trên.",
                  "Draw with a mouse, pen or finger. Keyboard: use the picture button above."),
    "canvas_label": ("Khung vẽ: vẽ một hình bằng chuột hoặc cảm ứng", "Drawing canvas: draw with a mouse or touch"),
    "clear": ("Xoá", "Clear"),
    "classify_drawing": ("Nhận dạng hình vẽ", "Classify the drawing"),
    "result_heading": ("Kết quả", "Result"),
    "top_class": ("Dự đoán", "Prediction"),
    "confidence": ("độ tin cậy", "confidence"),
    "top5": ("5 khả năng cao nhất", "Top 5"),
    "what_lstm_read": ("Ảnh mà LSTM đã đọc (sau tiền xử lý, phóng to)", "The picture the LSTM read (after preprocessing, enlarged)"),
    "what_lstm_read_alt": ("Ảnh {h}×{w} sau tiền xử lý, mỗi hàng là một bước thời gian của LSTM",
                           "The {h}×{w} preprocessed picture; each row is one LSTM time step"),
    "model_time": ("Thời gian mô hình", "Model time"),
    "ms": ("ms", "ms"),
    "uploaded": ("Ảnh đã gửi", "Uploaded picture"),
    "probability": ("xác suất", "probability"),
    # Text page
    "text_help": ("Nhập vài từ để mô hình viết tiếp. Văn bản hiện ra dần khi được sinh.",
                  "Type a few words for the model to continue. The text appears as it is generated."),
    "seed": ("Câu gợi ý", "Seed text"),
    "length_words": ("Số từ", "Words"),
    "length_couplets": ("Số cặp câu lục bát", "Couplets (six-eight)"),
    "strategy": ("Cách chọn từ", "Decoding strategy"),
    "strategy_greedy": ("Tham lam (luôn chọn từ có xác suất cao nhất)", "Greedy (always the most likely word)"),
    "strategy_temperature": ("Lấy mẫu theo nhiệt độ", "Sampling with temperature"),
    "strategy_top_k": ("Top-k", "Top-k"),
    "strategy_top_p": ("Top-p (nucleus)", "Top-p (nucleus)"),
    "strategy_beam": ("Tìm kiếm chùm (beam search)", "Beam search"),
    "temperature": ("Nhiệt độ", "Temperature"),
    "top_k": ("k", "k"),
    "top_p": ("p", "p"),
    "beam_width": ("Độ rộng chùm", "Beam width"),
    "random_seed": ("Hạt giống ngẫu nhiên (để trống: ngẫu nhiên)", "Random seed (empty: random)"),
    "meter": ("Giữ luật lục bát khi sinh", "Keep the six-eight meter while generating"),
    "generate": ("Sinh văn bản", "Generate"),
    "generating": ("Đang sinh…", "Generating…"),
    "generated_text": ("Văn bản sinh ra", "Generated text"),
    "tokens_in": ("{n} từ trong {s} giây", "{n} words in {s} s"),
    "used_random_seed": ("hạt giống ngẫu nhiên", "random seed"),
    "meter_check": ("Kiểm tra luật", "Meter check"),
    "syllables": ("âm tiết", "syllables"),
    "tones_ok": ("thanh điệu", "tones"),
    "rhyme_ok": ("vần", "rhyme"),
    "ok": ("đạt", "ok"),
    "not_ok": ("sai", "wrong"),
    "relaxed": ("đã nới luật", "rule relaxed"),
    "text_unavailable_code": ("Máy chủ chưa có mã sinh văn bản.", "The text generation code is not installed on this server."),
    # Model card
    "card_heading": ("Thẻ mô hình: {title}", "Model card: {title}"),
    "layers": ("Các lớp", "Layers"),
    "layer_name": ("Tên", "Name"),
    "layer_type": ("Loại", "Type"),
    "output_shape": ("Kích thước đầu ra", "Output shape"),
    "params": ("Tham số", "Parameters"),
    "params_total": ("Tổng số tham số", "Total parameters"),
    "data": ("Dữ liệu", "Data"),
    "data_source": ("Nguồn", "Source"),
    "licence": ("Giấy phép", "Licence"),
    "counts": ("Số mẫu", "Counts"),
    "metrics": ("Kết quả đo", "Metrics"),
    "metric": ("Chỉ số", "Metric"),
    "value": ("Giá trị", "Value"),
    "per_class_accuracy": ("Độ chính xác theo lớp", "Per-class accuracy"),
    "class": ("Lớp", "Class"),
    "accuracy": ("Độ chính xác", "Accuracy"),
    "confusion_matrix": ("Ma trận nhầm lẫn", "Confusion matrix"),
    "confusion_alt": ("Ma trận nhầm lẫn trên tập kiểm tra: hàng là lớp thật, cột là lớp dự đoán",
                      "Confusion matrix on the test set: rows are the true class, columns the predicted class"),
    "training_curves": ("Đường cong huấn luyện", "Training curves"),
    "curves_alt": ("Mất mát và độ chính xác theo từng epoch trên tập huấn luyện và tập kiểm định",
                   "Loss and accuracy per epoch on the training and validation sets"),
    "baseline": ("Mô hình cơ sở (công thức gốc của bài thực hành)", "Baseline (the lab's original recipe)"),
    "baseline_none": ("Không có mô hình cơ sở trong lần huấn luyện này.", "No baseline was trained in this run."),
    "recipe": ("Công thức", "Recipe"),
    "training": ("Huấn luyện", "Training"),
    "epochs_run": ("Số epoch đã chạy", "Epochs run"),
    "seconds_per_epoch": ("Giây mỗi epoch (trung bình)", "Seconds per epoch (mean)"),
    "optimizer": ("Bộ tối ưu", "Optimizer"),
    "reproduce": ("Lệnh tái tạo", "Command to reproduce"),
    "provenance": ("Nguồn gốc", "Provenance"),
    "serving": ("Cách máy chủ chạy mô hình", "How the server runs it"),
    "engine": ("Bộ chạy", "Engine"),
    "weights": ("trọng số", "weights"),
    "export_check": ("khác Keras tối đa {diff} về xác suất, cùng lớp trên {agree}% của {n} {kind}",
                     "probabilities at most {diff} from Keras, same class on {agree}% of {n} {kind}"),
    "test_images": ("ảnh kiểm tra", "test images"),
    "random_images": ("ảnh ngẫu nhiên (không có dữ liệu)", "random images (no data found)"),
    "int8_check": ("độ chính xác trên tập kiểm tra {acc}% so với {facc}% của float32; cùng lớp với float32 trên {agree}% của {n} ảnh.",
                   "test accuracy {acc}% against float32's {facc}%; same class as float32 on {agree}% of {n} images."),
    "int8_rule": ("giảm không quá 0,1 điểm phần trăm, trùng lớp ≥ 99%", "at most 0.1 percentage point lower, same class on ≥ 99%"),
    "int8_accepted": ("Đạt điều kiện ({rule}) nên được dùng: nhanh gấp khoảng 2 lần.",
                      "It passed the rule ({rule}), so it is served: about 2× faster."),
    "int8_rejected": ("Không đạt điều kiện ({rule}) nên không được dùng.", "It failed the rule ({rule}), so float32 is served."),
    "int8_not_made": ("Chưa tạo: không có ảnh kiểm tra có nhãn để kiểm tra.", "Not made: no labelled test images to check it on."),
    "git_commit": ("Phiên bản mã", "Code version"),
    "versions": ("Phiên bản thư viện", "Library versions"),
    "intended_use": ("Mục đích sử dụng", "Intended use"),
    "limitations": ("Giới hạn", "Limitations"),
    "group_accuracy": ("Độ chính xác theo nhóm", "Accuracy by group"),
    "architecture": ("Kiến trúc", "Architecture"),
    "meter_rates": ("Tỉ lệ đạt luật lục bát", "Six-eight meter pass rates"),
    "ngram_baseline": ("Mô hình n-gram cơ sở", "n-gram baseline"),
    "untrained": ("Mô hình chưa huấn luyện (chỉ dùng để kiểm thử).", "Untrained model (for tests only)."),
    # API page
    "api_heading": ("API JSON", "JSON API"),
    "api_intro": ("Mọi bài toán cũng dùng được qua API JSON. Lỗi trả về JSON {\"error\": …} với mã trạng thái phù hợp; thêm ?lang=en để nhận thông báo tiếng Anh.",
                  "Every task is also available over a JSON API. Errors come back as JSON {\"error\": …} with a fitting status; add ?lang=vi for Vietnamese messages."),
    "api_list": ("Danh sách bài toán và trạng thái mô hình", "The tasks and their model status"),
    "api_predict": ("Nhận dạng ảnh (multipart, trường file)", "Classify a picture (multipart, field file)"),
    "api_generate": ("Sinh văn bản (JSON vào, JSON ra)", "Generate text (JSON in, JSON out)"),
    "api_stream": ("Sinh văn bản dạng luồng (server-sent events)", "Generate text as a stream (server-sent events)"),
    "api_health": ("Tiến trình còn sống", "The process is alive"),
    "api_ready": ("Đã nạp xong mô hình; trạng thái từng bài toán", "Model loading has finished; status of each task"),
    "api_params": ("Tham số", "Parameters"),
    "example": ("Ví dụ", "Example"),
    # Errors
    "error": ("Lỗi", "Error"),
    "back_home": ("Về trang chủ", "Back to the home page"),
    "error_400": ("Yêu cầu không hợp lệ.", "The request is not valid."),
    "error_404": ("Không tìm thấy trang này.", "This page does not exist."),
    "error_405": ("Phương thức này không được hỗ trợ ở địa chỉ này.", "This method is not allowed here."),
    "error_413": ("Tệp quá lớn: giới hạn là {mb} MB.", "The file is too large: the limit is {mb} MB."),
    "error_429": ("Quá nhiều yêu cầu, vui lòng thử lại sau.", "Too many requests; please try again later."),
    "error_500": ("Đã xảy ra lỗi ở máy chủ. Lỗi đã được ghi lại.", "Something went wrong on the server. It has been logged."),
    "error_503": ("Mô hình của bài toán này chưa sẵn sàng.", "This task's model is not available."),
    "no_file": ("Chưa chọn ảnh nào.", "No picture was chosen."),
    "unknown_task": ("Không có bài toán '{slug}'.", "There is no task '{slug}'."),
    "not_image_task": ("'{slug}' không phải bài toán ảnh.", "'{slug}' is not an image task."),
    "not_text_task": ("'{slug}' không phải bài toán văn bản.", "'{slug}' is not a text task."),
    "bad_json": ("Nội dung gửi lên phải là JSON hợp lệ.", "The request body must be valid JSON."),
}


TRANSLATIONS = Path(__file__).resolve().parent / "translations"


def init_app(app: Flask) -> None:
    """Pick the language per request, remember a `?lang=` choice, expose `_` to templates."""
    compile_catalogues(TRANSLATIONS)
    Babel(app, locale_selector=current_language, default_translation_directories=str(TRANSLATIONS))
    app.before_request(_choose_language)
    app.after_request(_remember_language)
    app.jinja_env.globals.update(_=translate, lang=current_language, lang_url=language_url)


def compile_catalogues(folder: Path) -> None:
    """Compile every `<lang>/LC_MESSAGES/messages.po` under `folder` whose `.mo` is missing or older."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in folder.glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as fh:
            catalogue = read_po(fh)
        tmp = mo.with_suffix(f".mo.{os.getpid()}")
        with tmp.open("wb") as fh:
            write_mo(fh, catalogue)
        os.replace(tmp, mo)


def _choose_language() -> None:
    g.lang = _requested_language()


def _requested_language() -> str:
    langs = current_app.config["LANGUAGES"]
    for value in (request.args.get("lang"), request.cookies.get(COOKIE)):
        if value in langs:
            return value
    return current_app.config["DEFAULT_LANGUAGE"]


def _remember_language(response):
    chosen = request.args.get("lang")
    if chosen in current_app.config["LANGUAGES"] and request.cookies.get(COOKIE) != chosen:
        response.set_cookie(COOKIE, chosen, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response


def current_language() -> str:
    """The language of this request ("vi" or "en")."""
    return g.get("lang") or _requested_language()


def translate(key: str, **kw) -> str:
    """The message `key` in the current language, with `{name}` fields filled from `kw`;
    a key that is not in MESSAGES is a gettext msgid (English) looked up in the catalogues."""
    if key not in MESSAGES:
        return gettext(key, **kw)
    vi, en = MESSAGES[key]
    text = vi if current_language() == "vi" else en
    return text.format(**kw) if kw else text


def language_url(lang: str) -> str:
    """This page's URL with `?lang=` set (the language switch)."""
    args = request.args.to_dict()
    args["lang"] = lang
    return request.path + "?" + urlencode(args)


def invalid(key: str, status: int = 400, **kw) -> InvalidInput:
    """An InvalidInput carrying message `key` in both languages (for the views' own errors)."""
    vi, en = MESSAGES[key]
    return InvalidInput(en.format(**kw), vi.format(**kw), status)
