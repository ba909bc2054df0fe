"""The instructor console's test account, the id of its finished lab run, and what an upload
left under the instance's data sets."""

import os

INSTRUCTOR_PASSWORD = "correct horse battery"
INSTRUCTOR_RUN_ID = "a1b2c3d4e5f6"


def leftovers(app) -> list[str]:
    """Every file under <instance>/datasets (staging included)."""
    base = os.path.join(app.instance_path, "datasets")
    return sorted(os.path.relpath(os.path.join(d, f), base) for d, _dirs, files in os.walk(base) for f in files)
