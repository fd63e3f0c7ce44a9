"""Graded notebooks for an LLM course: student code runs apart, hidden pytest checks judge what it computed."""

import os

# Grading never goes online: the hub libraries read these once, when first imported, so they
# are set before anything of the grader imports them.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")
