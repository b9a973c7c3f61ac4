"""The compact kernels (kernels/compact.py, compact_pack.py) built for sm_90, called by
tests/sm90_compile.py: every precision and layout, and every config scripts/bench_compact.py's
sweep makes from the default, at VGG-16 conv5_2's channels (one group of 512). Each main-kernel
build's shared memory must stay within compact_config.shared_bytes (the bound the launcher fits
configs by) and, once fitted, within the H100 / H200 limit."""
import dataclasses

import torch
import triton

from sm90_compile import compile_variant
from zeroskip.kernels import compact, compact_config, compact_pack

LIMIT = 232448  # shared memory per block on an H100 / H200
IDX = {"ids_ptr": "*i32", "cnt_ptr": "*i32"}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _strides(c, h, w, nchw):
    return (dict(sxn=c * h * w, sxc=h * w, sxh=w, sxw=1) if nchw else dict(sxn=c * h * w, sxc=1, sxh=w * c, sxw=c))


def main_kernel(cfg, dtype, prec, c=512, co=512, h=14, nchw=False, pool=False):
    """One build of _compact_kernel as conv() would launch it; returns its shared memory."""
    ty, tx = triton.cdiv(h, cfg.th), triton.cdiv(h, cfg.tw)
    ph = h // 2 if pool else h
    out = _strides(co, ph, ph, nchw)
    consts = dict(_strides(c, h, h, nchw), syn=out["sxn"], syc=out["sxc"], syh=out["sxh"], syw=out["sxw"], C=c, H=h,
                  W=h, COUT=co, OH=h, OW=h, PH=h // 2, PW=h // 2, TY=ty, TX=tx, KH=3, KW=3, swo=1, swc=co,
                  swh=3 * c * co, sww=c * co, sb=1, pad_h=1, pad_w=1, HAS_BIAS=True, ACTIVATION=1, POOL=pool,
                  SKIP=True, PRECISION=prec, UPCAST=False, SPLIT=cfg.split, TH=cfg.th, TW=cfg.tw,
                  BLOCK_N=cfg.block_n, CHUNK=cfg.chunk, KPACK=cfg.kpack, DK=cfg.dk, GROUP=cfg.group,
                  NG_P2=triton.next_power_of_2(triton.cdiv(c, cfg.group)),
                  STAGES_R=compact_config.stages(cfg, cfg.kpack), STAGES_C=compact_config.stages(cfg, cfg.chunk))
    kernel = compile_variant(compact._compact_kernel, dtype, consts, cfg.num_warps, cfg.num_stages, ptrs=IDX)
    bound = compact_config.shared_bytes(cfg, DTYPES[dtype], prec)
    assert kernel.metadata.shared <= bound, (cfg, dtype, prec, kernel.metadata.shared, bound)
    assert kernel.metadata.shared <= LIMIT, (cfg, dtype, prec, kernel.metadata.shared)
    return kernel.metadata.shared


def pack_kernel(dtype, c, h, th, tw, group, nchw=False, split=1):
    warps = compact_pack.warps(group, th, tw)
    consts = dict(_strides(c, h, h, nchw), C=c, H=h, W=h, TY=triton.cdiv(h, th), TX=triton.cdiv(h, tw), pad_h=1,
                  pad_w=1, KH=3, KW=3, TH=th, TW=tw, GROUP=group, CHUNK=16, SPLIT=split,
                  **compact_pack.blocks(not nchw, th, tw, 3, 3, group, 16, warps))
    return compile_variant(compact_pack._pack_kernel, dtype, consts, warps, 1, ptrs=IDX)


def sweep_configs(base):
    """The default and each one-parameter change scripts/bench_compact.py's sweep times (warps
    raised to what the accumulator needs)."""
    yield base
    changes = [dict(th=th, tw=tw) for th, tw in ((8, 8), (8, 16), (16, 8), (16, 16))]
    changes += [dict(block_n=64), dict(block_n=256), dict(kpack=16), dict(kpack=32), dict(kpack=64),
                dict(num_warps=4), dict(num_warps=8), dict(num_stages=2), dict(num_stages=4)]
    for change in changes:
        cfg = dataclasses.replace(base, **change)
        cfg = dataclasses.replace(cfg, num_warps=max(cfg.num_warps, compact_config.min_warps(cfg.th, cfg.tw,
                                                                                             cfg.block_n)))
        if cfg != base:
            yield cfg


def run():
    from zeroskip.geometry import check_conv
    x = torch.empty(32, 512, 14, 14)
    spec = check_conv(x, torch.empty(512, 512, 3, 3), None, 1, 1, 1, 1)
    for dtype, prec in (("fp16", "ieee"), ("fp32", "3xtf32")):
        base = compact_config.default_config(spec, DTYPES[dtype])
        for cfg in sweep_configs(base):
            main_kernel(compact_config.fit(cfg, DTYPES[dtype], prec, LIMIT), dtype, prec)
    default = compact_config.default_config(spec, torch.float16)
    for dtype, prec, change, layout in (
            ("bf16", "ieee", {}, dict(pool=True)), ("fp32", "tf32", dict(dk=32), {}),
            ("fp32", "3xtf32", dict(dk=32), dict(nchw=True, pool=True)),
            ("fp16", "ieee", dict(group=256, split=4), {}),                      # two groups, split tiles
            ("fp16", "ieee", dict(group=128, kpack=64, th=4, tw=16, num_warps=4), dict(c=256, h=28))):
        cfg = compact_config.fit(dataclasses.replace(default, **change), DTYPES[dtype], prec, LIMIT)
        main_kernel(cfg, dtype, prec, **layout)
    for dtype, c, h, th, tw, group, nchw, split in (("fp16", 128, 56, 8, 16, 128, False, 1),
                                                    ("bf16", 512, 14, 8, 16, 512, False, 4),
                                                    ("fp32", 256, 28, 16, 8, 256, True, 1),
                                                    ("fp16", 128, 56, 16, 16, 64, False, 2)):
        pk = pack_kernel(dtype, c, h, th, tw, group, nchw, split)
    out = dict(OH=14, OW=14, PH=7, PW=7, COUT=512, TY=2, TX=1, syn=512 * 49, syc=1, syh=7 * 512, syw=512, sb=1)
    rk = compile_variant(compact._reduce_kernel, "fp16", dict(out, HAS_BIAS=True, ACTIVATION=1, POOL=True, SPLIT=4,
                                                              TH=8, TW=16, BLOCK_N=128), 4, 1)
    print("compact: main kernel configs within their shared-memory bound; pass 1", len(pk.asm["cubin"]),
          "reduce", len(rk.asm["cubin"]), "bytes")
