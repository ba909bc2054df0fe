"""Running a downloaded program notebook the way a student's Jupyter would (nbclient)."""

from __future__ import annotations

import os
from pathlib import Path


def execute_notebook(notebook, folder: Path, env: dict[str, str]) -> str:
    """Execute `notebook` in place with a python3 kernel started in `folder`, the environment
    variables `env` set for it (and restored afterwards); returns its last cell's printed text."""
    import nbclient

    saved = dict(os.environ)
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "2", **env})
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
