"""Debian's chromium as the browser tests launch it, a page that records what went wrong, and an
app served on loopback for it."""

import contextlib

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]



def new_page(browser, problems: list):
    """A page that appends page errors and Content-Security-Policy refusals to `problems`."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    return page


@contextlib.contextmanager
def serve_on_loopback(app):
    """The Flask `app` served on a free loopback port by a thread of this process; yields its URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
