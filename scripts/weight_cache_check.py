"""On a GPU: kernels/weight_cache.py reuses a weight's packing on CUDA (the same tensor comes back),
prepares it again after each kind of change, and what a cache hit costs on the host.

PYTHONPATH=src python scripts/weight_cache_check.py OUT_DIR
Writes OUT_DIR/weight_cache.txt; exits 1 if a check fails.
"""
import sys
import timeit
from pathlib import Path

import torch
from torch import nn

import zeroskip
from zeroskip.kernels import launch, winograd

lines, failed = [], False


def report(name, ok, detail=""):
    global failed
    failed |= not ok
    lines.append(f"{'ok  ' if ok else 'FAIL'} {name} {detail}".rstrip())


torch.backends.cudnn.allow_tf32 = False
w = nn.Parameter(torch.randn(256, 256, 3, 3, device="cuda"))
x = torch.randn(1, 256, 28, 28, device="cuda")
hit = launch.packed_weight(w, k_major=True, split=True)
report("packed weight cached on CUDA", launch.packed_weight(w, k_major=True, split=True) is hit)
u = winograd.transformed_weight(w)
report("Winograd U cached on CUDA", winograd.transformed_weight(w) is u)
n = 100_000
for name, call in (("packed_weight hit", lambda: launch.packed_weight(w, k_major=True, split=True)),
                   ("transformed_weight hit", lambda: winograd.transformed_weight(w))):
    lines.append(f"     {name}: {timeit.timeit(call, number=n) / n * 1e6:.2f} us on the host")


def agrees(name):
    with torch.no_grad():
        for algo in ("igemm", "winograd"):
            out = zeroskip.conv2d(x, w, None, padding=1, algo=algo)
            ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
            err = ((out.double() - ref).norm() / ref.norm()).item()
            report(f"{name}, {algo}", err <= 1e-5, f"rel err {err:.2e}")


agrees("first call")
w.data = w.data.transpose(2, 3)
agrees("after w.data = w.data.transpose(2, 3)")
vec = w.detach().reshape(-1).clone()
torch.nn.utils.vector_to_parameters(vec, [w])
agrees("after vector_to_parameters")
vec.mul_(-2)
torch.nn.utils.vector_to_parameters(vec, [w])
agrees("after editing the reused vector")
del vec
with torch.no_grad():
    w.mul_(0.5)
agrees("after an in-place edit")
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
(Path(sys.argv[1]) / "weight_cache.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if failed else 0)
