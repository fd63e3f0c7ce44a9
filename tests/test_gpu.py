"""CUDA inside the cage (both confined runners): the device works, and a run's GPU memory is capped.

Marked ``cuda``: skipped without a GPU; ``bash bench/gpu_check.sh`` runs them on a GPU runner.
"""

from __future__ import annotations

import textwrap

import nbformat
import pytest

from autograder.runners import RUNNERS, Sandbox, SandboxUnavailable
from autograder.runners.base import RunJob, RunLimits

GiB = 1 << 30
pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module", params=sorted(RUNNERS))
def runner(request):
    try:
        made = RUNNERS[request.param](Sandbox())
    except SandboxUnavailable as exc:
        pytest.skip(f"the sandbox cannot run here: {exc}")
    yield made
    made.close()


def _run(runner, *sources: str, gpu_memory_bytes: int | None = None):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    with runner.start(RunJob(nb, env={}, limits=RunLimits(cell_timeout=120, gpu_memory_bytes=gpu_memory_bytes))) as s:
        return [(c.status, c.error) for c in s.cells]


def test_cuda_works_inside_the_cage(runner):
    cells = _run(runner, textwrap.dedent("""
        import os, torch
        assert torch.cuda.is_available()
        x = torch.randn(1024, 1024, device="cuda")
        assert float((x @ x).sum().cpu()) == float((x @ x).sum().cpu())
        for tid in os.listdir("/proc/self/task"):  # thread names are writable, as CUDA's libraries need
            with open(f"/proc/self/task/{tid}/comm", "w") as f:
                f.write("renamed")
        assert os.memfd_create("probe") > 0
        """))
    assert cells == [("ok", None)]


def test_a_greedy_notebook_is_held_to_its_gpu_share(runner):
    cells = _run(runner, f"import torch\nsmall = torch.empty({GiB // 2}, dtype=torch.uint8, device='cuda')",
                 f"big = torch.empty({4 * GiB}, dtype=torch.uint8, device='cuda')", gpu_memory_bytes=2 * GiB)
    assert cells[0] == ("ok", None)
    status, error = cells[1]
    assert status == "memory" and "OutOfMemoryError" in error
