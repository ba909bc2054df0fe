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


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page, axe_path, include: str | None = None) -> list[dict]:
    """axe-core's WCAG 2.1 A/AA violations on `page` (or inside the `include` selector), each as
    {"id", "nodes": the first five targets}; the page's context must bypass CSP to inject axe."""
    page.add_script_tag(path=str(axe_path))
    result = page.evaluate("opts => axe.run(opts.include ? {include: [opts.include]} : document, opts.run)",
                           {"include": include, "run": {"runOnly": {"type": "tag", "values": AXE_TAGS},
                                                        "resultTypes": ["violations"]}})
    return [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result["violations"]]
