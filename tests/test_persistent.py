"""The persistent dense conv (kernels/persistent.py): programs that walk several tiles each give
the reference, with every output element written, for plain and fused-pool calls and groups."""
import pytest
import torch

from helpers import TOL, TOL_TF32, reference, rel_err, sparse
from zeroskip.geometry import check_conv, with_pool


def _launch(x, w, b, spec, activation, monkeypatch):
    from zeroskip.kernels import launch
    y = torch.full((spec.batch, spec.out_channels, spec.result_h, spec.result_w), float("nan"),
                   dtype=x.dtype, device=x.device)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = y.contiguous(memory_format=torch.channels_last)
    prec = launch.precision("igemm", x.dtype)
    wp = launch.packed_weight(w, k_major=prec != "ieee" and spec.in_per_group >= 16)
    return launch._Launch(x, wp, wp, b if b is not None else y, y, spec, activation, "igemm", prec,
                          b is not None), y


@pytest.mark.parametrize("pool, groups, programs", [
    (None, 1, 2), ("max", 1, 3), ("avg", 2, 2), ("max", 2, 64),
])
def test_programs_walking_several_tiles_match_reference(pool, groups, programs, device, monkeypatch):
    x = sparse((2, 32, 9, 10), 0.5, torch.float16, device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(40, 32 // groups, 3, 3, device=device).half()   # 20 outputs per group
    b = torch.randn(40, device=device).half()
    spec = check_conv(x, w, b, 1, 1, 1, groups)
    if pool:
        spec = with_pool(spec, pool, 3, 2, 1)                 # overlapping windows
    run, y = _launch(x, w, b, spec, "relu", monkeypatch)
    run.persistent(programs=programs)
    ref = reference(x, w, b, 1, 1, 1, groups, "relu", pool, 3, 2, 1)
    assert not torch.isnan(y).any()
    assert rel_err(y, ref) <= TOL[torch.float16]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sixteen_bit_nchw_with_stride(dtype, device, monkeypatch):
    x = sparse((3, 16, 11, 7), 0.3, dtype=dtype, device=device)
    w = torch.randn(24, 16, 3, 3, device=device).to(dtype)
    spec = check_conv(x, w, None, 2, 1, 1, 1)
    run, y = _launch(x, w, None, spec, None, monkeypatch)
    run.persistent(programs=2)
    assert not torch.isnan(y).any()
    assert rel_err(y, reference(x, w, None, 2, 1)) <= TOL[dtype]


def test_tf32(device, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    x = sparse((2, 32, 8, 8), 0.5, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(16, 32, 3, 3, device=device)
    spec = with_pool(check_conv(x, w, None, 1, 1, 1, 1), "max", 2, 2, 0)
    run, y = _launch(x, w, None, spec, "relu", monkeypatch)
    run.persistent(programs=1)
    assert rel_err(y, reference(x, w, None, 1, 1, 1, 1, "relu", "max", 2, 2, 0)) <= TOL_TF32


def test_three_product_fp32_is_refused(device, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    x = torch.ones(1, 16, 4, 4, device=device)
    w = torch.ones(8, 16, 3, 3, device=device)
    run, _ = _launch(x, w, None, check_conv(x, w, None, 1, 1, 1, 1), None, monkeypatch)
    with pytest.raises(ValueError, match="precision '3xtf32'"):
        run.persistent()
