"""How many submissions a machine grades at once: one per core, fewer when memory is short, and on a GPU as many
as its free memory holds at the exercise's declared need (the capacity model the local executor, the Ray executor
and the submission service share)."""

from __future__ import annotations

import os

from ..exercise import Exercise

GIB = 1024 ** 3
# Memory one grading slot needs (grader process + student process): measured for the stand-ins; at real sizes,
# what the exercise lets the student's process take plus the grader's models (see slot_memory).
SLOT_MEMORY = {"tiny": 2 * GIB}
SLOT_MEMORY_DEFAULT = 6 * GIB  # an exercise not known here
GRADER_MEMORY = 1 * GIB  # the grader's own process beyond its models
# On the GPU, what the exercise declares (`[limits] gpu_memory_gib`), else these.
SLOT_GPU_MEMORY = {"tiny": 1 * GIB}
SLOT_GPU_MEMORY_DEFAULT = 8 * GIB


def slot_memory(profile: str, exercise: Exercise | None) -> int:
    """Main memory one submission of the exercise may take while graded at a profile's sizes."""
    if profile in SLOT_MEMORY:
        return SLOT_MEMORY[profile]
    if exercise is None:
        return SLOT_MEMORY_DEFAULT
    from ..models.provision import store_for

    limits = exercise.spec.limits
    named = {v for v in exercise.spec.grading_parameters.values() if isinstance(v, str)}
    models = sum(count for hub_id, count in store_for(profile).parameters().items() if hub_id in named)
    return int(limits.of("memory_gib", profile) * GIB + models * 4 * limits.grader_model_copies + GRADER_MEMORY)


def default_jobs(profile: str, exercise: Exercise | None = None) -> int:
    """Parallel submissions this machine can take: one per core, fewer when memory is short (at real sizes a
    submission may take what the exercise lets it, see slot_memory), and on a GPU as many as its free memory holds
    at the exercise's declared need per submission."""
    cores = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    jobs = min(cores, memory // slot_memory(profile, exercise))
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        declared = exercise.spec.limits.gpu_memory(profile) if exercise else None
        need = declared * GIB if declared else SLOT_GPU_MEMORY.get(profile, SLOT_GPU_MEMORY_DEFAULT)
        jobs = min(jobs, free // need)
    return max(1, int(jobs))
