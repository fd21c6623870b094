"""Resumable stages: each stage's outputs appear all at once, with a manifest, or not at all.

A stage is a function that writes files into a folder it is given, plus the settings that define
those files and the names of the stages whose outputs it reads. Running it:

  1. key = hash(its settings, the ids of the upstream stages' manifests);
  2. if OUT/stages/NAME/manifest.json holds the same key and its files are all there: skip;
  3. else run the function in OUT/stages/.NAME.partial-KEY/ and, when it returns, write the
     manifest there and rename the folder to OUT/stages/NAME (replacing the old one).

So an interrupt never leaves a half-made NAME folder: the next run finds no manifest (or an old
key) and does the stage again. A *resumable* stage (one that checkpoints itself, such as GAN
training) keeps its partial folder across an interrupt and continues from its checkpoints; any
other stage's partial folder is deleted when it fails and before it starts.

Each manifest has an `id`. A stage whose outputs are fully determined by its inputs returns a
`content` fingerprint (a hash of its arrays) and its id is derived from that, so stages downstream
of it are skipped when a rerun makes the same outputs; otherwise the id is new on every run, so
everything downstream is redone.
"""
import hashlib
import multiprocessing as mp
import signal
import threading
import json
import os
import shutil
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

from common.files import atomic_write_json

MANIFEST = "manifest.json"


@dataclass
class Stage:
    """One step of the pipeline.

    name: folder name under OUT/stages.  run: `run(folder, upstream) -> summary dict`, where
    upstream = {dep name: its manifest}.  settings: JSON-ready dict that defines the outputs.
    deps: names of the stages it reads.  resumable: keep the partial folder over an interrupt.
    """
    name: str
    run: Callable
    settings: dict
    deps: tuple = ()
    resumable: bool = False
    what: str = ""


def fingerprint(obj):
    """sha256 of an object's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def content_hash(*arrays):
    """sha256 over arrays' dtypes, shapes and bytes: the same images give the same hash."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def read_manifest(folder):
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def list_files(folder):
    """{relative path: size in bytes} of every file under `folder` but the manifest."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def intact(folder, manifest):
    """Every file the manifest lists is there with its size."""
    folder = Path(folder)
    for rel, size in manifest.get("files", {}).items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def clean_leftovers(root):
    """Remove folders left by an interrupted publish (`.NAME.old-*`)."""
    root = Path(root)
    if root.is_dir():
        for p in root.glob(".*.old-*"):
            shutil.rmtree(p, ignore_errors=True)


def publish(partial, final):
    """Put the finished folder `partial` in place of `final`: two renames, the old one removed after."""
    final = Path(final)
    trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, trash)
    os.replace(partial, final)
    shutil.rmtree(trash, ignore_errors=True)


@dataclass
class Started:
    """A stage about to run: under which key, in which partial folder, and its log label."""
    stage: Stage
    key: str
    partial: Path
    label: str
    resumed: bool


def call_stage(run, folder, upstream):
    """Run a stage function (in this process or a worker process); returns (summary, wall seconds,
    CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run(folder, upstream) or {}
    return summary, time.perf_counter() - wall, time.process_time() - cpu


def _worker_ignores_ctrl_c():
    """Worker processes ignore Ctrl-C (the terminal sends it to the whole process group): the main
    process handles it, stops the workers and reports once. Their progress bars get a plain thread
    lock instead of tqdm's default inter-process one, whose semaphore a stopped worker could not
    release (Python then warns of "leaked semaphore objects" at exit)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NN_THREADS")


def _limit_threads():
    """Worker processes: one thread each (BLAS's and nn's), so N workers use N cores (the variables are
    read when NumPy loads and when nn first runs, both after this in a spawned worker)."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = "1"


class Runner:
    """Runs stages under `root` (OUT/stages), skipping finished ones, and logs one line each.

    force: stage names to redo even when finished (their downstream stages follow, since a rerun
    gives a new id).  log: where the summary lines go.
    `run(stage)` runs one stage here; `run_many(stages, jobs)` runs a list, up to `jobs` at a time
    in worker processes, each as soon as the stages it reads are done.
    """

    def __init__(self, root, log=print, force=(), progress=False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        clean_leftovers(self.root)
        self.log, self.force, self.progress = log, set(force), progress
        self.manifests, self.actions = {}, {}

    def key(self, stage):
        missing = [d for d in stage.deps if d not in self.manifests]
        if missing:
            raise ValueError(f"stage {stage.name}: upstream stage(s) {', '.join(missing)} have not run")
        return fingerprint({"stage": stage.name, "settings": stage.settings,
                            "consumed": {d: self.manifests[d]["id"] for d in stage.deps}})

    def upstream(self, stage):
        return {d: self.manifests[d] for d in stage.deps}

    # -- one stage, step by step ------------------------------------------------------------

    def prepare(self, stage, index=None, total=None):
        """Skip the stage (returns None) or make its partial folder ready (returns a Started)."""
        key = self.key(stage)
        final = self.root / stage.name
        label = (f"[{index}/{total}] " if total else f"[{index}] ") if index else ""
        old = read_manifest(final)
        if old and old.get("key") == key and stage.name not in self.force and intact(final, old):
            self.log(f"{label}{stage.name:<30} skipped: done with these settings ({old['seconds']:.1f} s when it ran)")
            self._done(stage, old, "skipped")
            return None
        partial = self.root / f".{stage.name}.partial-{key[:16]}"
        for other in self.root.glob(f".{stage.name}.partial-*"):
            if other != partial or not stage.resumable:
                shutil.rmtree(other, ignore_errors=True)
        partial.mkdir(parents=True, exist_ok=True)
        resumed = stage.resumable and any(partial.iterdir())
        return Started(stage, key, partial, label, resumed)

    def finish(self, st, summary, seconds, cpu):
        """Write the manifest into the partial folder and publish it under the stage's name."""
        stage = st.stage
        content = summary.pop("content", None)
        manifest = {
            "stage": stage.name, "what": stage.what, "key": st.key,
            "id": fingerprint({"content": content}) if content else fingerprint({"key": st.key, "run": uuid.uuid4().hex}),
            "settings": stage.settings,
            "consumed": {d: {"id": self.manifests[d]["id"], "key": self.manifests[d]["key"]} for d in stage.deps},
            "summary": summary, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "resumed": st.resumed,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "finished_unix": time.time(),
            "files": list_files(st.partial),
        }
        atomic_write_json(st.partial / MANIFEST, manifest)
        publish(st.partial, self.root / stage.name)
        note = summary.get("note")
        self.log(f"{st.label}{stage.name:<30} {'resumed and finished' if st.resumed else 'ran'} in {seconds:.1f} s"
                 + (f": {note}" if note else ""))
        return self._done(stage, manifest, "ran")

    def fail(self, st):
        """After an exception or interrupt: keep a resumable stage's checkpoints, delete anything else."""
        if st.stage.resumable:
            self.log(f"{st.label}{st.stage.name:<30} interrupted: its checkpoints in {st.partial} are resumed next time")
        else:
            shutil.rmtree(st.partial, ignore_errors=True)
            self.log(f"{st.label}{st.stage.name:<30} stopped: nothing of it is kept")

    def _done(self, stage, manifest, action):
        self.manifests[stage.name] = manifest
        self.actions[stage.name] = action
        return manifest

    # -- whole stages ---------------------------------------------------------------------------

    def run(self, stage, index=None, total=None):
        """Run or skip one stage in this process; returns its manifest."""
        st = self.prepare(stage, index, total)
        if st is None:
            return self.manifests[stage.name]
        try:
            summary, seconds, cpu = call_stage(stage.run, st.partial, self.upstream(stage))
        except BaseException:
            self.fail(st)
            raise
        return self.finish(st, summary, seconds, cpu)

    def run_many(self, stages, jobs=1, first_index=1, total=None):
        """Run or skip `stages` (in an order where every stage follows the ones it reads). With jobs > 1,
        up to `jobs` run at once in worker processes (spawned, one BLAS thread each)."""
        if jobs <= 1:
            for i, stage in enumerate(stages, first_index):
                self.run(stage, i, total)
            return
        index = {stage.name: i for i, stage in enumerate(stages, first_index)}
        pending, running = list(stages), {}
        # the workers show no bars of their own (they would interleave): one bar counts finished stages
        bar = auto_tqdm(total=len(stages), desc=f"stages ({jobs} at a time)", unit="stage", disable=not self.progress)
        log, self.log = self.log, (lambda line: bar.write(line) if self.progress else log(line))
        saved = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
        _limit_threads()                         # inherited by the spawned workers
        pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_ignores_ctrl_c)
        error = None                             # the first stage that failed; the running ones still finish
        try:
            while running or (pending and error is None):
                if error is None:
                    self._start_ready(pending, running, pool, jobs, index, total)
                if not running:
                    if pending and error is None:
                        raise ValueError(f"stages {', '.join(s.name for s in pending)} read stages that are not run")
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    st = running.pop(future)
                    try:
                        summary, seconds, cpu = future.result()
                    except Exception as exc:
                        self.fail(st)
                        error = error or exc
                        continue
                    self.finish(st, summary, seconds, cpu)
                bar.n = len(self.actions) - (first_index - 1)
                bar.refresh()
        except BaseException:                    # an interrupt here: stop the workers, keep what is finished
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            for st in running.values():
                self.fail(st)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            del pool                             # its queues' semaphores are released now, not leaked at exit
            bar.close()
            self.log = log
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if error is not None:
            raise error

    def _start_ready(self, pending, running, pool, jobs, index, total):
        """Skip or start pending stages whose upstream stages are done, in list order, while fewer
        than `jobs` run."""
        progressed = True
        while progressed:                        # a skipped stage can make others ready at once
            progressed = False
            for stage in [s for s in pending if all(d in self.manifests for d in s.deps)]:
                if len(running) >= jobs:
                    return
                pending.remove(stage)
                progressed = True
                st = self.prepare(stage, index[stage.name], total)
                if st is not None:
                    self.log(f"{st.label}{stage.name:<30} started")
                    running[pool.submit(call_stage, stage.run, st.partial, self.upstream(stage))] = st
