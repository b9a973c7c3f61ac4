"""Compiles the kernels that measure() calls will need in worker processes, before they are timed.

A layer's first call through each candidate algo compiles Triton kernels, and compiling is CPU work
done one kernel at a time: ResNet-50's 53 convs took 4:52 to measure on an H200 with an empty Triton
cache, 35 s with a warm one. `warm(jobs, workers)` starts `workers` processes (`python -m
zeroskip.warm`, so no user script is re-imported), each making its share of the calls once on
stand-in tensors (the same shape, strides, storage offset, dtype and device; ReLU'd random input),
which fills Triton's on-disk cache; the timed calls then load the kernels from it. Nothing here is
needed for correctness: a worker that fails leaves its kernels to be compiled where they are timed.
"""
from __future__ import annotations

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
    """One measure() call as a job: op, described positional and keyword arguments, activation and
    the candidate algos to run (torch's and cuDNN's paths compile nothing and are left out)."""
    return (op, tuple(describe(a) for a in call), tuple((k, describe(v)) for k, v in sorted(kwargs.items())),
            activation, tuple(c for c in candidates if c not in ("torch", "cudnn")))


def _tensor(desc, gen, relu):
    _, shape, stride, offset, dtype, device = desc
    size = offset + 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else offset
    t = torch.randn(size, generator=gen).to(device, dtype).as_strided(shape, stride, offset)
    return t.relu_() if relu else t


def _build(desc, gen, relu=False):
    return _tensor(desc, gen, relu) if desc[0] == "tensor" else desc[1]


def run_job(spec) -> list:
    """Makes one job's calls; returns [(algo, None or the error's first line)]."""
    from . import library
    op, call, kwargs, activation, candidates = spec
    gen = torch.Generator().manual_seed(0)
    args = [_build(d, gen, relu=i == 0) for i, d in enumerate(call)]
    kw = {k: _build(d, gen) for k, d in kwargs}
    fn = library.conv2d_pool if op == "conv2d_pool" else library.conv2d
    done = []
    with torch.no_grad():
        for algo in candidates:
            try:
                fn(*args, algo=algo, activation=activation, **kw)
                if args[0].is_cuda:
                    torch.cuda.synchronize()
                done.append((algo, None))
            except Exception as exc:  # the timed run drops this candidate and says why
                done.append((algo, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"))
    return done


def check_workers(workers) -> None:
    """workers must be None or an int >= 0 (ValueError naming it otherwise)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers must be an int >= 0 or None, got {workers!r}")


def default_workers(n_jobs: int) -> int:
    """One worker per job, at most one per CPU beyond the caller's and at most 8 (each holds a CUDA
    context and its own Python)."""
    return max(0, min(n_jobs, (os.cpu_count() or 1) - 1, 8))


WORKER = [sys.executable, "-m", "zeroskip.warm"]
JOB_TIMEOUT_S = 300.0  # per job; ResNet-50's largest layer compiles its candidates in well under a minute


def warm(jobs, workers=None, progress=False, timeout=JOB_TIMEOUT_S) -> list:
    """Runs the jobs (job() tuples) in `workers` processes (None: default_workers); returns each
    job's run_job result in order, [] for a job whose worker failed or was stopped: a worker that
    finishes no job for `timeout` seconds is killed. workers=0 runs nothing."""
    jobs = list(jobs)
    check_workers(workers)
    workers = default_workers(len(jobs)) if workers is None else workers
    results = [[] for _ in jobs]
    if not jobs or workers == 0:
        return results
    order = sorted(range(len(jobs)), key=lambda i: -_work(jobs[i]))  # biggest first, dealt in turn
    shares = [order[w::workers] for w in range(workers)]
    # tuned choices stay in the workers: their timings share the GPU with each other
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), ZEROSKIP_TUNER_CACHE="0")
    lock = threading.Lock()
    with bar(len(jobs), "compiling kernels", progress, "layer") as done:
        def serve(share):
            proc = subprocess.Popen(WORKER, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            last = [time.monotonic()]
            watch = threading.Thread(target=_watch, args=(proc, last, timeout), daemon=True)
            watch.start()
            try:
                proc.stdin.write(pickle.dumps([jobs[i] for i in share]))
                proc.stdin.close()
                for i in share:
                    line = proc.stdout.readline()
                    if not line:
                        break
                    results[i] = pickle.loads(bytes.fromhex(line.decode().strip()))
                    last[0] = time.monotonic()
                    with lock:
                        done.update()
            except (OSError, ValueError, pickle.UnpicklingError):  # the worker died or was killed
                pass
            finally:
                proc.kill()
                proc.wait()
        threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in shares if s]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results


def _watch(proc, last, timeout) -> None:
    """Kills `proc` once `timeout` seconds pass with no job finished (last[0]: when one last did)."""
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
    """Worker: reads a pickled job list on stdin, writes one hex-pickled result line per job."""
    for spec in pickle.loads(sys.stdin.buffer.read()):
        print(pickle.dumps(run_job(spec)).hex(), flush=True)


if __name__ == "__main__":
    _main()
