"""The instructor console's test account and the id of its finished lab run."""

INSTRUCTOR_PASSWORD = "correct horse battery"
INSTRUCTOR_RUN_ID = "a1b2c3d4e5f6"
