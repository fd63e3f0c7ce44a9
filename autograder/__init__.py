"""Graded notebooks for an LLM course: student code runs apart, hidden pytest checks judge what it computed."""

import os

# Grading never goes online: the hub libraries read these once, when first imported, so they
# are set before anything of the grader imports them.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")

# The grader and the student process take turns (a request, then its answer). OpenMP's default
# keeps a finished parallel region's threads spinning, burning the core the other process needs
# next; passive waiting gave a tokenizer submission about 10% less wall time on 2 cores. Set
# before torch is imported (its OpenMP runtime reads it once); the student process gets the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
