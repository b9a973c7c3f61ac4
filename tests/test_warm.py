"""zeroskip.warm: the candidate kernels compiled in worker processes before layers are timed. The
workers run here on the interpreter (TRITON_INTERPRET is inherited), or on the GPU with --device cuda."""
import pytest
import torch

import zeroskip
from zeroskip import runtime, warm


def test_workers_make_each_jobs_calls_and_name_what_failed(device):
    x = torch.randn(1, 3, 8, 8, device=device).relu_()
    w3, w5 = torch.randn(4, 3, 3, 3, device=device), torch.randn(4, 3, 5, 5, device=device)
    r = torch.randn(1, 4, 8, 8, device=device)
    pool = dict(pool="max", pool_size=(2, 2), pool_stride=(2, 2), pool_padding=(0, 0))
    jobs = [warm.job("conv2d", (x, w3, None, (1, 1), (1, 1), (1, 1), 1), {}, "relu", ("torch", "ecr")),
            warm.job("conv2d_residual", (x, w5, torch.randn(4, device=device), (1, 1), (2, 2), (1, 1), 1),
                     {"residual": r}, None, ("ecr", "winograd")),
            warm.job("conv2d_pool", (x[:, :, :, 1:], w3, None, (1, 1), (1, 1), (1, 1), 1), pool, "relu", ("ecr",))]
    assert jobs[0][-1] == ("ecr",)  # torch's own path compiles nothing
    results = warm.warm(jobs, workers=2)
    assert results[0] == [("ecr", None)] and results[2] == [("ecr", None)]
    (ecr, why), (winograd, error) = results[1]
    assert (ecr, why, winograd) == ("ecr", None, "winograd") and "needs a 3x3 kernel" in error


def test_stand_ins_keep_the_layout():
    base = torch.randn(2, 9, 5, 7, dtype=torch.float16).to(memory_format=torch.channels_last)
    view = base[:, 1:, :, 2:]
    built = warm._build(warm.describe(view), torch.Generator().manual_seed(0), relu=True)
    assert (built.shape, built.stride(), built.storage_offset(), built.dtype) == (
        view.shape, view.stride(), view.storage_offset(), view.dtype)
    assert built.min() == 0 and built.max() > 0
    assert warm.describe((2, 2)) == ("value", (2, 2))


@pytest.mark.parametrize("workers", [-1, 1.5, True, "2"])
def test_bad_workers_are_named(workers):
    with pytest.raises(ValueError, match="workers must be an int >= 0 or None"):
        warm.warm([], workers)
    with pytest.raises(ValueError, match="workers must be an int >= 0 or None"):
        zeroskip.convert_(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), workers=workers)


def test_no_workers_no_jobs():
    job = warm.job("conv2d", (torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3)), {}, None, ("ecr",))
    assert warm.warm([job], workers=0) == [[]] and warm.warm([], None) == []
    assert 0 <= warm.default_workers(100) <= warm.MAX_WORKERS and warm.default_workers(0) == 0
    assert warm.default_workers(1) <= 1


def test_a_hanging_worker_is_stopped(monkeypatch):
    """A worker that finishes no job within the timeout is killed and its jobs are left undone."""
    import sys
    import time
    monkeypatch.setattr(warm, "WORKER", [sys.executable, "-c", "import time; time.sleep(120)"])
    job = warm.job("conv2d", (torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3)), {}, None, ("ecr",))
    start = time.monotonic()
    assert warm.warm([job, job], workers=2, timeout=1.0) == [[], []]
    assert time.monotonic() - start < 30


def test_a_dead_worker_loses_only_the_task_it_held(monkeypatch):
    """Tasks are (call, algo) pairs taken by whichever worker is free: a worker that dies on one
    leaves that algo out of its job's result, and the other workers do the rest."""
    import sys
    script = ("import pickle, sys\n"
              "for line in sys.stdin:\n"
              "    algo = pickle.loads(bytes.fromhex(line.strip()))[-1][0]\n"
              "    if algo == 'winograd': sys.exit(1)\n"
              "    print(pickle.dumps([(algo, None)]).hex(), flush=True)\n")
    monkeypatch.setattr(warm, "WORKER", [sys.executable, "-c", script])
    x, w = torch.randn(1, 2, 6, 6), torch.randn(2, 2, 3, 3)
    big = warm.job("conv2d", (torch.randn(2, 2, 6, 6), w), {}, None, ("igemm", "winograd", "ecr"))
    small = warm.job("conv2d", (x, w), {}, None, ("igemm", "ecr"))
    assert warm.warm([small, big], workers=2) == [[("igemm", None), ("ecr", None)], [("igemm", None), ("ecr", None)]]
    assert warm.warm([big], workers=1) == [[("igemm", None)]]  # the only worker died: the rest is left


def test_workers_compile_and_time_nothing(monkeypatch):
    """In a warm worker graph_ms runs fn once (the compile) and returns 0, and no tuned choice is kept
    on disk; elsewhere the tuners keep theirs where Triton can."""
    runtime._tuner_cache.cache_clear()
    monkeypatch.setenv("ZEROSKIP_WARM_WORKER", "1")
    calls = []
    assert runtime.graph_ms(lambda: calls.append(1)) == 0.0 and calls == [1]
    assert runtime.graph_ms(lambda: calls.append(1), quantiles=(0.5, 0.2)) == [0.0, 0.0] and calls == [1, 1]
    assert runtime.tuner_cache() == {}
    runtime._tuner_cache.cache_clear()
    monkeypatch.delenv("ZEROSKIP_WARM_WORKER")
    assert not runtime.warm_worker()
    import inspect
    import triton
    kept = "cache_results" in inspect.signature(triton.autotune).parameters
    assert runtime.tuner_cache() == ({"cache_results": True} if kept else {})
    runtime._tuner_cache.cache_clear()


@pytest.mark.parametrize("tf32", [False, True])
def test_workers_compile_under_the_callers_tf32_switch(monkeypatch, tf32):
    """A fresh worker starts with cuDNN's TF32 switch on (torch's default), and the switch picks the
    fp32 kernels (TF32 or 3xTF32): each job carries the caller's, so TF32-off runs find their kernels
    compiled. The stand-in conv reports the switch it ran under."""
    import sys
    script = ("import torch\n"
              "from zeroskip import library, warm\n"
              "def conv2d(*args, **kwargs):\n"
              "    raise RuntimeError(f'tf32={torch.backends.cudnn.allow_tf32}')\n"
              "library.conv2d = conv2d\n"
              "warm._main()\n")
    monkeypatch.setattr(warm, "WORKER", [sys.executable, "-c", script])
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    job = warm.job("conv2d", (torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3)), {}, None, ("igemm",))
    assert warm.warm([job], workers=1) == [[("igemm", f"RuntimeError: tf32={tf32}")]]
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", not tf32)
    assert warm.run_job(job) == [("igemm", None)] and torch.backends.cudnn.allow_tf32 == (not tf32)
