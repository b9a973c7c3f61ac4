"""Compiles the kernels that measure() calls will need in worker processes, before they are timed.

A layer's first call through each candidate algo compiles Triton kernels, and compiling is CPU work
done one kernel at a time: with an empty Triton cache, ResNet-50's 53 convs took 4:52 to measure
in one process (H200). `warm(jobs, workers)` starts `workers` processes (`python -m zeroskip.warm`,
so no user script is re-imported) that take one (call, algo) task at a time, as each finishes the
last, and make the call once on stand-in tensors (the same shape, strides, storage offset, dtype and
device; ReLU'd random input), which fills Triton's on-disk cache; the timed calls then load the
kernels from it. Nothing here is needed for correctness: a worker that fails leaves its kernels to
be compiled where they are timed.
"""
from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys
import threading
import time

import torch

from .progress import bar


def describe(value):
    """A picklable stand-in description of a call argument (tensors by layout, the rest as is)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), tuple(value.stride()), value.storage_offset(), value.dtype,
                str(value.device))
    return ("value", value)


def job(op, call, kwargs, activation, candidates) -> tuple:
    """One measure() call as a job: op, described positional and keyword arguments, activation, this
    process's torch.backends.cudnn.allow_tf32 (it picks the fp32 kernels: TF32 or 3xTF32, and a
    worker starts with torch's default, on) and the candidate algos to run (torch's and cuDNN's
    paths compile nothing and are left out)."""
    return (op, tuple(describe(a) for a in call), tuple((k, describe(v)) for k, v in sorted(kwargs.items())),
            activation, bool(torch.backends.cudnn.allow_tf32),
            tuple(c for c in candidates if c not in ("torch", "cudnn")))


def _tensor(desc, gen, relu):
    _, shape, stride, offset, dtype, device = desc
    size = offset + 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else offset
    t = torch.randn(size, generator=gen).to(device, dtype).as_strided(shape, stride, offset)
    return t.relu_() if relu else t


def _build(desc, gen, relu=False):
    return _tensor(desc, gen, relu) if desc[0] == "tensor" else desc[1]


def run_job(spec) -> list:
    """Makes one job's calls under the job's TF32 switch; returns [(algo, None or the error's first
    line)]."""
    from . import library
    op, call, kwargs, activation, tf32, candidates = spec
    gen = torch.Generator().manual_seed(0)
    args = [_build(d, gen, relu=i == 0) for i, d in enumerate(call)]
    kw = {k: _build(d, gen) for k, d in kwargs}
    fn = library.conv2d_pool if op == "conv2d_pool" else library.conv2d
    done, saved = [], torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        with torch.no_grad():
            for algo in candidates:
                try:
                    fn(*args, algo=algo, activation=activation, **kw)
                    if args[0].is_cuda:
                        torch.cuda.synchronize()
                    done.append((algo, None))
                except Exception as exc:  # the timed run drops this candidate and says why
                    done.append((algo, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"))
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    return done


def check_workers(workers) -> None:
    """workers must be None or an int >= 0 (ValueError naming it otherwise)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers must be an int >= 0 or None, got {workers!r}")


# Compiling is single-threaded CPU work (LLVM, ptxas), so one worker per CPU beyond the caller's; each
# also holds a CUDA context (about 0.5 GB of GPU memory). ResNet-50 fp16 batch 32: 24 calls compiled
# in 50 s by 8 workers on 16 CPUs (H100, experiments/convert_time_probe.py).
MAX_WORKERS = 16


def default_workers(n_tasks: int) -> int:
    """One worker per task, at most one per CPU beyond the caller's and at most MAX_WORKERS."""
    return max(0, min(n_tasks, (os.cpu_count() or 1) - 1, MAX_WORKERS))


WORKER = [sys.executable, "-m", "zeroskip.warm"]
JOB_TIMEOUT_S = 300.0  # per task; ResNet-50's largest layer compiles its candidates in well under a minute


def warm(jobs, workers=None, progress=False, timeout=JOB_TIMEOUT_S) -> list:
    """Runs the jobs (job() tuples) in `workers` processes (None: default_workers); returns each
    job's run_job result in order. Each (job, algo) is one task, biggest call first, handed to
    whichever worker is free (an autotuned algo compiles a dozen tiles, a plain one a single kernel,
    so tasks differ widely in compile time). A worker that finishes no task for `timeout` seconds is killed; the task it held
    is missing from its job's result, the others go to the remaining workers. workers=0 runs nothing."""
    jobs = list(jobs)
    check_workers(workers)
    tasks = [(i, algo) for i in sorted(range(len(jobs)), key=lambda i: -_work(jobs[i])) for algo in jobs[i][-1]]
    workers = default_workers(len(tasks)) if workers is None else min(workers, len(tasks))
    done_tasks = {}
    if not tasks or workers == 0:
        return [[] for _ in jobs]
    queue = collections.deque(tasks)
    # workers compile and time nothing (runtime.warm_worker): the measuring process times each tile
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), ZEROSKIP_WARM_WORKER="1")
    lock = threading.Lock()
    with bar(len(tasks), "compiling kernels", progress, "call") as done:
        def serve():
            proc = subprocess.Popen(WORKER, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            last = [time.monotonic()]
            watch = threading.Thread(target=_watch, args=(proc, last, timeout), daemon=True)
            watch.start()
            try:
                while True:
                    with lock:
                        if not queue:
                            break
                        i, algo = queue.popleft()
                    last[0] = time.monotonic()
                    proc.stdin.write(pickle.dumps((*jobs[i][:-1], (algo,))).hex().encode() + b"\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                    if not line:
                        break
                    result = pickle.loads(bytes.fromhex(line.decode().strip()))
                    with lock:
                        done_tasks[i, algo] = result[0]
                        done.update()
            except (OSError, ValueError, pickle.UnpicklingError):  # the worker died or was killed
                pass
            finally:
                proc.kill()
                proc.wait()
        threads = [threading.Thread(target=serve, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return [[done_tasks[i, algo] for algo in job[-1] if (i, algo) in done_tasks] for i, job in enumerate(jobs)]


def _watch(proc, last, timeout) -> None:
    """Kills `proc` once `timeout` seconds pass with no task finished (last[0]: when the one it holds
    was handed over)."""
    while proc.poll() is None:
        if time.monotonic() - last[0] > timeout:
            proc.kill()
            return
        time.sleep(min(1.0, timeout / 4))


def _work(spec) -> int:
    """A job's size for ordering: the input's element count times the weight's."""
    sizes = [d[1] for d in spec[1][:2] if d[0] == "tensor"]
    return int(torch.Size(sizes[0]).numel() * torch.Size(sizes[1]).numel()) if len(sizes) == 2 else 0


def _main() -> None:
    """Worker: reads one hex-pickled job per line on stdin until it closes, writes one hex-pickled
    result line per job."""
    for line in sys.stdin:
        print(pickle.dumps(run_job(pickle.loads(bytes.fromhex(line.strip())))).hex(), flush=True)


if __name__ == "__main__":
    _main()
