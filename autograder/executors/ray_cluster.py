"""Grading workers as Ray actors on a cluster (``--executor ray``): for a course that outgrows one machine.

Each actor is a long-lived worker like a local one: it holds one ``GraderHost`` (checks, reference models and
the confined warm runner, whose zygote pays the imports once per actor) and grades the submissions the batch
sends it. The batch stays on this machine as the gradebook's only writer, so everything local grading
promises holds here too (one row per submission, resumable, nothing graded twice); an actor or node that dies
is a dead worker, whose submission the batch retries once, then records as an error.

Resources each actor asks for: one CPU, the memory of one grading slot, and on a GPU cluster the exercise's
declared ``gpu_memory_gib`` as a fraction of the node's GPU. Ray only schedules by that fraction; the runner
caps the student process's CUDA memory at the declared need, so a greedy notebook cannot take its
neighbours' share.

Every node grades with its own files: the project and the course installed at the same paths (a shared
folder or one image), and the models of the profile from its own cache (the stand-ins are built once per node
when missing: deterministic). An actor reports fingerprints of both before it grades, and the batch stops
with one sentence when a node differs from this machine (or, for models this machine lacks, from the first
node that answered).

Ray is an optional extra: only this module imports it, and only ``--executor ray`` imports this module.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import os
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from ..errors import UserError
from ..exercise import Exercise
from ..i18n import L_, sentence_of
from ..paths import COURSE_SETTING, PACKAGE, checks_dir
from .base import Executor, GraderHost, Message, Worker, WorkerJob

GIB = 1024 ** 3
CPUS_PER_ACTOR = 1
# The settings a node's actors take from this machine: where the course, its caches and the hub cache are.
FORWARDED_SETTINGS = (COURSE_SETTING, "AUTOGRADER_CACHE", "AUTOGRADER_GRADER_MEMORY_GIB", "HF_HUB_CACHE", "HF_HOME")
# How often the batch looks at its wake pipe while it waits on the cluster (the submission service's uploads).
WAKE_POLL = 0.2


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(L_("--executor ray needs Ray, which is not installed here; install it with "
                           "`pip install '.[ray]'` and run the batch again.")) from None
    return ray


def code_fingerprint(exercise: Exercise) -> str:
    """What a node grades with, besides the models: the project's code and the exercise's files (notebooks,
    settings, hidden checks). The rubric is not in it: the batch scores, here."""
    digest = hashlib.sha256()
    roots = [PACKAGE, exercise.assignment_dir, checks_dir(exercise.name, exercise.root)]
    for root in dict.fromkeys(roots):  # the bundled course keeps its checks inside the package
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def node_models(profile: str):
    """This node's model store of the profile, built here first when missing (one actor builds, the others of
    the node wait for it), or one sentence why it cannot be."""
    from ..models.provision import prepare, store_for

    store = store_for(profile)
    if profile == "hub" or store.is_prepared():
        return prepare(profile, log=lambda _: None)  # for hub: checks the models are in the cache
    store.root.parent.mkdir(parents=True, exist_ok=True)
    with open(store.root.parent / f".{profile}.building", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return prepare(profile, log=lambda _: None)  # a no-op when another actor built it meanwhile


def actors_that_fit(nodes: list[dict[str, float]], need: dict[str, float]) -> int:
    """How many actors asking for ``need`` the nodes (each its resources: CPU, memory, GPU) hold together."""
    return sum(math.floor(min(node.get(k, 0.0) / v for k, v in need.items() if v) + 1e-9) for node in nodes)


class Agreement:
    """What every node must grade with: this machine's code, and its models (or, where it has none of the
    profile, those of the first node that answers)."""

    def __init__(self, code: str, models: str | None) -> None:
        self.code, self.models = code, models
        self.models_from: Any = L_("this machine")

    def check(self, node: str, fingerprint: dict[str, str]):
        """None when ``node`` grades with the same; else the sentence that stops the batch."""
        if fingerprint["code"] != self.code:
            return L_("Node {node} has another version of the project or of the course than this machine; install "
                      "the same commit and course folder on every node, and run the batch again.").format(node=node)
        if self.models is None:
            self.models, self.models_from = fingerprint["models"], node
        elif fingerprint["models"] != self.models:
            return L_("Node {node} has other model weights than {reference} (fingerprint {theirs}, not {ours}); run "
                      "`autograder models prepare --force` with the same profile there, or give every node the same "
                      "model cache, and run the batch again.").format(
                          node=node, reference=self.models_from, theirs=fingerprint["models"], ours=self.models)
        return None


def gpu_share(declared_gib: float, node_gib: float) -> float:
    """The fraction of one GPU an actor asks Ray for: the exercise's declared need over the node's GPU memory,
    rounded up to Ray's resource precision (1/10000)."""
    return min(1.0, math.ceil(declared_gib / node_gib * 10_000) / 10_000)


class GradingActor:
    """The body of one Ray actor (made remote at run time, so that importing this module needs no cluster)."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.host: GraderHost | None = None

    def open(self) -> Message:
        """Load the grader; say where it runs and with what, or why it cannot grade."""
        import ray

        try:
            store = node_models(self.job.options.profile)
            fingerprint = {"code": code_fingerprint(Exercise(self.job.exercise, self.job.root)),
                           "models": store.fingerprint()}
            self.host = GraderHost(self.job)
        except UserError as exc:
            return ("fatal", sentence_of(exc))
        node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
        return ("ready", {"node": node, "fingerprint": fingerprint})

    def grade(self, label: str, data: bytes) -> Message:
        assert self.host is not None
        return self.host.grade(label, data)

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
            self.host = None


class RayWorker(Worker):
    def __init__(self, executor: RayExecutor, actor: Any) -> None:
        super().__init__()
        self.executor, self.actor = executor, actor
        self.pending = actor.open.remote()  # what the actor is computing: its "ready", then each submission
        self.lost = False

    def send(self, label: str, data: bytes) -> None:
        self.pending = self.actor.grade.remote(label, data)

    def receive(self) -> list[Message]:
        ray = self.executor.ray
        if self.pending is None or not ray.wait([self.pending], timeout=0)[0]:
            return []
        ref, self.pending = self.pending, None
        try:
            kind, payload = ray.get(ref)
        except ray.exceptions.RayActorError:  # the actor, or its node, died
            self.lost = True
            return []
        except ray.exceptions.RayError as exc:
            problem = str(exc).strip().splitlines()[-1]
            # a failure while the actor loads its grader is the batch's to stop on; one while grading is that row's
            return [("failed", problem) if self.ready else ("fatal", L_(
                "A grading actor could not start on the cluster: {problem}").format(problem=problem))]
        if kind == "ready":
            self.node = payload["node"]
            problem = self.executor.agreement.check(self.node, payload["fingerprint"])
            if problem is not None:
                return [("fatal", problem)]
            payload = self.node
        return [(kind, payload)]

    def alive(self) -> bool:
        return not self.lost

    def kill(self) -> None:
        try:
            self.executor.ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone, with its node
            pass

    def stop(self) -> None:
        ray = self.executor.ray
        if self.row is None and not self.lost:
            try:
                ray.get(self.actor.close.remote(), timeout=10)
            except (ray.exceptions.RayError, TimeoutError):
                pass
        self.kill()


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None) -> None:
        self.ray = _ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or "auto"
        try:
            if self.address != "auto":  # Ray itself retries an unanswered address for minutes
                host, _, port = self.address.rpartition(":")
                socket.create_connection((host, int(port)), timeout=10).close()
            if not self.ray.is_initialized():  # the submission service has an executor per exercise, one cluster
                self.ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as exc:  # OSError, or Ray's ConnectionError, ValueError or RuntimeError, as the case may be
            raise UserError(L_("No Ray cluster answers at {address} ({problem}); start one (`ray start --head`) or "
                               "pass its head node's address with --ray-address HOST:PORT.").format(
                                   address=self.address, problem=str(exc).strip().splitlines()[0][:200])) from None
        self._resources: dict[str, float] | None = None
        self._actor_class: Any = None
        self.agreement: Agreement | None = None

    def _alive_nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def choose_device(self, requested: str | None) -> str | None:
        return requested or ("cuda" if self.ray.cluster_resources().get("GPU", 0) > 0 else "cpu")

    def resources(self, profile: str, exercise: Exercise, device: str) -> dict[str, float]:
        """What one actor asks for: {"CPU", "memory" (bytes), "GPU" (a fraction)}."""
        if self._resources is None:
            from .capacity import SLOT_GPU_MEMORY, SLOT_GPU_MEMORY_DEFAULT, slot_memory

            need = {"CPU": CPUS_PER_ACTOR, "memory": slot_memory(profile, exercise)}
            if device.startswith("cuda"):
                declared = exercise.spec.limits.gpu_memory(profile)
                declared = declared or SLOT_GPU_MEMORY.get(profile, SLOT_GPU_MEMORY_DEFAULT) / GIB
                need["GPU"] = gpu_share(declared, self._smallest_gpu_gib())
            self._resources = need
        return self._resources

    def _smallest_gpu_gib(self) -> float:
        """The GPU memory of the cluster's smallest GPU, asked of each GPU node (Ray does not report it)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        @self.ray.remote(num_gpus=0.0001, num_cpus=0)
        def gpu_gib() -> float:
            import torch

            return torch.cuda.get_device_properties(0).total_memory / GIB

        nodes = [n for n in self._alive_nodes() if n["Resources"].get("GPU")]
        asked = [gpu_gib.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
                 for n in nodes]
        return min(self.ray.get(asked))

    def capacity(self, profile: str, exercise: Exercise, device: str = "cpu") -> int:
        need = self.resources(profile, exercise, device)
        return max(1, actors_that_fit([node["Resources"] for node in self._alive_nodes()], need))

    def threads(self, profile: str, jobs: int) -> int:
        return CPUS_PER_ACTOR

    def start(self, job: WorkerJob) -> RayWorker:
        if self._actor_class is None:
            exercise = Exercise(job.exercise, job.root)
            need = self.resources(job.options.profile, exercise, job.options.device or "cpu")
            env = {k: os.environ[k] for k in FORWARDED_SETTINGS if k in os.environ}
            self._actor_class = self.ray.remote(GradingActor).options(
                num_cpus=need["CPU"], memory=need["memory"], num_gpus=need.get("GPU", 0), max_restarts=0,
                max_task_retries=0, scheduling_strategy="SPREAD", runtime_env={"env_vars": env})
            self.agreement = Agreement(code_fingerprint(exercise), self._own_models(job.options.profile))
        return RayWorker(self, self._actor_class.remote(job))

    @staticmethod
    def _own_models(profile: str) -> str | None:
        from ..models.provision import store_for

        try:
            return store_for(profile).require().fingerprint()
        except UserError:  # this machine has no models of the profile: the first node to answer sets them
            return None

    def wait(self, workers: list[Worker], wake: Connection | None, timeout: float) -> None:
        pending = [w.pending for w in workers if isinstance(w, RayWorker) and w.pending is not None]
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            step = min(left, WAKE_POLL) if wake is not None else left
            if pending:
                if self.ray.wait(pending, num_returns=1, timeout=step)[0]:
                    return
            elif wake is not None:
                if wake.poll(step):
                    return
                continue
            else:
                time.sleep(step)
            if wake is not None and wake.poll(0):
                return

    def close(self) -> None:
        self.ray.shutdown()
