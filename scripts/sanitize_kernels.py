"""Small calls through every kernel path, for compute-sanitizer (memcheck) on the GPU.

The dense path is launched with fixed tiles (one per tile shape the autotuner may pick), since
autotuning under memcheck takes minutes; the kernel code is the same.

python scripts/sanitize_kernels.py [PART ...]   PART: direct, winograd, gemm, pgemm, im2col, im2col_taps, pool,
linear, tf32, compact, depthwise
(default all)"""
import sys
import torch
sys.path.insert(0, "src")
import zeroskip
from zeroskip.geometry import check_conv, with_pool
from zeroskip.kernels import direct as dense, launch, winograd4, winograd_steps

PARTS = sys.argv[1:] or ["direct", "winograd", "gemm", "pgemm", "im2col", "im2col_taps", "pool", "linear", "tf32",
                         "compact", "depthwise"]


def direct():
    x = torch.randn(2, 6, 13, 11, device="cuda").relu_()
    w = torch.randn(8, 3, 3, 3, device="cuda")
    b = torch.randn(8, device="cuda")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        xx, ww, bb = x.to(dtype), w.to(dtype), b.to(dtype)
        for algo in ("ecr", "ecr_tc"):
            zeroskip.conv2d(xx, ww, bb, (1, 2), 1, (2, 1), 2, activation="relu", algo=algo)
            zeroskip.conv2d_pool(xx.to(memory_format=torch.channels_last), ww, bb, 1, 1, 1, 2,
                                 pool="max", pool_size=3, pool_stride=2, pool_padding=1, algo=algo)
            zeroskip.conv2d_pool(xx[:, :, 1:, ::2], ww, None, 2, 0, 1, 2, pool="avg", algo=algo)
        for cfg in (dense.Config(16, 16, 16, 4, 2), dense.Config(256, 64, 32, 8, 3), dense.Config(64, 128, 64, 4, 3)):
            spec = check_conv(xx, ww, bb, 1, 1, 1, 2)
            dense.conv(xx, ww, bb, spec, "relu", "igemm", cfg, skip=False)
            dense.conv(xx, ww, bb, with_pool(spec, "max", 3, 2, 1), "relu", "igemm", cfg, skip=False)
            dense.conv(xx, ww, bb, with_pool(spec, "avg", 2, 2, 0), "relu", "igemm", cfg, skip=False, split=3)
            dense.conv(xx, ww, bb, spec, None, "igemm", cfg, skip=False, split=2)
            r = torch.randn(2, 8, 13, 11, device="cuda", dtype=dtype)
            dense.conv(xx, ww, bb, spec, "relu", "igemm", cfg, skip=False, residual=r)
            dense.conv(xx, ww, bb, spec, "relu6", "igemm", cfg, skip=False, split=2,
                       residual=r.to(memory_format=torch.channels_last))


def _fixed_gemm(v, u, m_dtype, v_lo=None, u_lo=None):
    """The Winograd GEMMs on fixed tiles (autotuning under memcheck takes minutes): the direct
    kernel's grouped 1x1 conv, or with halves the batched kernel's 3xfp16 products."""
    if v_lo is not None:
        return _halves_gemm(v, u, m_dtype, v_lo, u_lo)
    return dense.conv(v, u, None, winograd_steps.gemm_spec(v, u), None, "igemm", dense.Config(32, 32, 16, 4, 2),
                       skip=False, out_dtype=m_dtype)


winograd_steps.gemm = _fixed_gemm


def _halves_gemm(v, u, m_dtype, v_lo, u_lo):
    from zeroskip.kernels import winograd_gemm as wg
    tiles, c = v.shape[2], u.shape[1]
    pos = v.shape[1] // c
    m = torch.empty((1, tiles, 1, u.shape[0]), dtype=m_dtype, device="cuda").permute(0, 3, 1, 2)
    wg._gemm_kernel[(-(-tiles // 64), -(-(u.shape[0] // pos) // 64), pos)](
        v, v_lo, u, u_lo, m, tiles, c, u.shape[0] // pos, pos, PRECISION="3xfp16", UPCAST=False, RUNNING=True,
        BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, num_warps=4, num_stages=3)
    return m


def persistent_gemm():
    # the 16-bit Winograd GEMMs' persistent kernels, every tile config alone, on sizes that fill no
    # tile (rows, output channels); 96 channels (no multiple of 64) take the pointer kernel
    from triton.tools.tensor_descriptor import TensorDescriptor
    from zeroskip.kernels import persistent_gemm as pg
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for dtype in (torch.float16, torch.bfloat16):
        for tiles, c, cout in ((300, 128, 40), (77, 96, 200)):
            v = torch.randn(tiles, 36, c, device="cuda").to(dtype)
            u = torch.randn(36, cout, c, device="cuda").to(dtype)
            m = torch.empty(tiles, 36, cout, device="cuda", dtype=dtype)
            want = torch.einsum("tpc,poc->tpo", v.float(), u.float())
            for cfg in pg._tuned_pointer.configs:
                k = cfg.kwargs
                ops = (v, u)
                if pg.tma_fits(v, u.view(36 * cout, c)):
                    kernel = pg._tma_kernel
                    ops = (TensorDescriptor(v, [tiles, 36 * c], [36 * c, 1], [k["BLOCK_M"], k["BLOCK_K"]]),
                           TensorDescriptor(u, [36 * cout, c], [c, 1], [k["BLOCK_N"], k["BLOCK_K"]]))
                else:
                    kernel = pg._pointer_kernel
                n = -(-tiles // k["BLOCK_M"]) * -(-cout // k["BLOCK_N"]) * 36
                kernel[(min(n, sms * k["PER_SM"]),)](*ops, m, tiles, c, cout, 36, UPCAST=False, **k,
                                                     num_warps=cfg.num_warps)
                assert ((m.float() - want).norm() / want.norm()).item() < 1e-2, (dtype, tiles, c, cout, str(cfg))
    torch.cuda.synchronize()
    print("sanitize persistent GEMMs done")


def winograd_paths():
    # Winograd F(2x2) and F(4x4): both transform kernels on odd maps (partial edge tiles; 9x7 is no
    # multiple of 2 or 4) and on 8x12 (whole tiles: NCHW rows stored as vectors), NCHW and
    # channels_last, with and without the fused pool; their GEMM on fixed tiles (autotuning under
    # memcheck takes minutes).
    from zeroskip.kernels import winograd  # noqa: E402
    prefer_halves = winograd4.prefer_halves

    xw = torch.randn(2, 5, 9, 7, device="cuda").relu_()
    xv = torch.randn(2, 5, 8, 12, device="cuda").relu_()
    ww = torch.randn(6, 5, 3, 3, device="cuda")
    bw = torch.randn(6, device="cuda")
    # fp16 and bf16 take 16-bit V and U (bf16 under F(4x4): scaled fp16 ones and M), fp16 an fp16 M, as
    # winograd_steps.run_steps sets them.
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        # one weight per dtype, so the scaled F(4x4) paths take both second passes: V written again
        # (a layer's first call, or a magnitude far from its last) and V kept (winograd.HEADROOM)
        wd, bd = ww.to(dtype), bw.to(dtype)
        for kernels in (winograd, winograd4):
            for xx in (xw.to(dtype), xw.to(dtype).to(memory_format=torch.channels_last), xv.to(dtype)):
                for pool, act in ((None, None), ("max", "relu"), ("avg", "relu6")):
                    spec = check_conv(xx, wd, bd, 1, 1, 1, 1)
                    spec = with_pool(spec, pool, 2, 2, 0) if pool else spec
                    kernels.conv(xx, wd, bd, spec, act)
                    if kernels is winograd4 and dtype == torch.float32:
                        # V and U as fp16 halves (3xfp16 GEMMs on the batched kernel, fixed tiles)
                        winograd4.prefer_halves = lambda spec, sms: True
                        kernels.conv(xx, ww, bw, spec, act)
                        winograd4.prefer_halves = prefer_halves
    torch.cuda.synchronize()
    print("sanitize run done")


def im2col_kernel(taps=False):
    # im2col: few channels, several BLOCK_K chunks (5x5x3 = 75 columns), strided/padded/dilated,
    # grouped, fused overlapping pools, NCHW and channels_last, on fixed tiles (autotuning under
    # memcheck takes minutes). Flat gather: every precision; tap gather (taps=True, part
    # "im2col_taps"): 3xtf32 and fp16, a tap's 3 channels read as 4.
    from zeroskip.kernels import im2col  # noqa: E402

    xi = torch.randn(2, 6, 13, 11, device="cuda").relu_()
    wi = torch.randn(8, 3, 5, 5, device="cuda")
    bi = torch.randn(8, device="cuda")
    precisions = ((torch.float32, "3xtf32"), (torch.float16, "ieee")) if taps else (
        (torch.float32, "3xtf32"), (torch.float32, "tf32"), (torch.float16, "ieee"), (torch.bfloat16, "ieee"))
    for dtype, prec in precisions:
        for xx in (xi.to(dtype), xi.to(dtype).to(memory_format=torch.channels_last)):
            ww, bb = wi.to(dtype), bi.to(dtype)
            hi, lo = launch.split_weight(ww) if prec == "3xtf32" else (ww, ww)
            for args, pool in ((((1, 2), 2, (2, 1), 2), None), ((2, 1, 1, 2), ("max", 3, 2, 1)), ((1, 2, 1, 2), ("avg", 2, 2, 0))):
                spec = check_conv(xx, ww, bb, *args)
                spec = with_pool(spec, *pool) if pool else spec
                y = torch.empty((2, 8, spec.result_h, spec.result_w), device="cuda", dtype=dtype)
                for tiles in ((32, 16, 16, 4, int(taps)), (128, 64, 32, 8, int(taps))):
                    im2col._launch(xx, hi, lo, bb, y, spec, 1, {None: 0, "max": 1, "avg": 2}[pool and pool[0]], prec,
                                False, tiles)
    torch.cuda.synchronize()
    print(f"sanitize im2col{' taps' if taps else ''} done")


def pool_kernel():
    """kernels/pool.py on maps the blocks do not tile (pixels, channels), padded and uneven windows."""
    from zeroskip.kernels import pool
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for c, h, w, size, stride, padding in ((64, 21, 19, 3, 2, 1), (130, 9, 7, (2, 3), (1, 2), (1, 0))):
            y = torch.randn(3, c, h, w, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)
            conv = check_conv(y, torch.empty(c, c, 1, 1, device="cuda", dtype=dtype), None, 1, 0, 1, 1)
            for kind in ("max", "avg"):
                pool.pool(y, with_pool(conv, kind, size, stride, padding))
    torch.cuda.synchronize()
    print("sanitize pool done")


def linear_kernel():
    """kernels/linear.py in every config, on sizes no block tiles (rows, outputs, reduction)."""
    from zeroskip.kernels import linear
    for dtype in (torch.float16, torch.bfloat16):
        for rows, k, n in ((1, 1000, 37), (19, 300, 70)):
            x = torch.randn(rows, k, device="cuda", dtype=dtype)
            w, b = torch.randn(n, k, device="cuda", dtype=dtype), torch.randn(n, device="cuda", dtype=dtype)
            for config in linear.CONFIGS:
                linear.run(x, w, b, "relu", config)
                linear.run(x, w, None, None, config)
    torch.cuda.synchronize()
    print("sanitize linear done")


def gemm():
    """The batched Winograd GEMMs on fixed tiles (each precision's tuner candidates), on sizes that fill
    no block (rows, channels)."""
    from zeroskip.kernels import winograd_gemm as wg
    for dtype, prec, m_dtype, blocks in (
            (torch.float32, "3xtf32", torch.float32, ((64, 128, 32, 4), (128, 128, 32, 8))),
            (torch.float32, "tf32", torch.float32, ((128, 256, 32, 8), (64, 128, 32, 4))),
            (torch.float16, "ieee", torch.float16, ((128, 128, 64, 8), (64, 128, 64, 4))),
            (torch.float16, "ieee", torch.float32, ((128, 256, 64, 8), (64, 128, 64, 4))),
            (torch.bfloat16, "ieee", torch.float32, ((128, 256, 64, 8), (128, 64, 64, 4))),
            (torch.float16, "3xfp16", torch.float32, ((128, 128, 32, 8), (64, 128, 64, 4)))):
        for tiles, c, cout, pos in ((130, 40, 70, 36), (7, 96, 24, 16)):
            v = torch.randn(1, tiles, 1, pos * c, device="cuda").to(dtype).permute(0, 3, 1, 2)
            u = torch.randn(pos * cout, c, 1, 1, device="cuda").to(dtype)
            hi, lo = launch.split_weight(u) if prec == "3xtf32" else (u, u)
            m = torch.empty((1, tiles, 1, pos * cout), dtype=m_dtype, device="cuda").permute(0, 3, 1, 2)
            split = prec in ("3xtf32", "3xfp16")
            for (bm, bn, bk, warps), running in ((b, r) for b in blocks for r in (False, split)):
                grid = (-(-tiles // bm), -(-cout // bn), pos)
                wg._gemm_kernel[grid](v, v, hi, lo, m, tiles, c, cout, pos, PRECISION=prec, UPCAST=False, RUNNING=running,
                                      BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=3)
    torch.cuda.synchronize()
    print("sanitize gemm done")


def tf32_paths():
    """TF32 on: the NCHW -> channels_last copy on sizes that fill no block, the direct path that reads
    NCHW input through it (fixed tiles), and F(4x4) on scaled fp16 V and U with an fp16 M (under a
    pool) and an fp32 M (plain conv)."""
    from zeroskip.kernels import layout
    for shape in ((2, 70, 13, 11), (3, 16, 5, 9), (1, 130, 1, 1)):
        x = torch.randn(shape, device="cuda")
        for dtype in (torch.float32, torch.float16):
            assert torch.equal(layout.to_channels_last(x.to(dtype)), x.to(dtype))
    torch.backends.cudnn.allow_tf32 = True
    x = torch.randn(2, 32, 13, 11, device="cuda").relu_()
    w = torch.randn(24, 16, 3, 3, device="cuda")
    spec = check_conv(x, w, None, 1, 1, 1, 2)
    for cfg in (dense.Config(64, 32, 32, 4, 3), dense.Config(128, 64, 32, 4, 3)):
        dense.conv(x, w, None, spec, "relu", "igemm", cfg, skip=False)
        dense.conv(x, w, None, with_pool(spec, "max", 2, 2, 0), "relu", "igemm", cfg, skip=False)
    prefer_fp16 = winograd4.prefer_fp16_operands
    winograd4.prefer_fp16_operands = lambda spec: True
    for xx in (torch.randn(2, 5, 9, 7, device="cuda"), torch.randn(2, 5, 8, 12, device="cuda")):
        for xl in (xx, xx.to(memory_format=torch.channels_last)):
            ww, bw = torch.randn(6, 5, 3, 3, device="cuda"), torch.randn(6, device="cuda")
            plain = check_conv(xl, ww, bw, 1, 1, 1, 1)
            winograd4.conv(xl, ww, bw, with_pool(plain, "max", 2, 2, 0), "relu")  # fp16 M
            winograd4.conv(xl, ww, bw, plain, "relu")  # fp32 M
    winograd4.prefer_fp16_operands = prefer_fp16
    torch.backends.cudnn.allow_tf32 = False
    torch.cuda.synchronize()
    print("sanitize tf32 done")


def compact_kernels():
    """Per-tile channel compaction on ragged maps (tiles past the map, channels past a group and a
    chunk, output channels past a block), dense, packed and mixed groups, every precision, both
    layouts, pool or not, split tiles and split pass 1, dots of 1, 2 and 4 chunks."""
    from zeroskip.kernels import compact
    x = torch.randn(2, 40, 13, 11, device="cuda").relu_()
    x[:, 20:] *= (torch.rand(2, 20, 3, 3, device="cuda") < 0.3).repeat_interleave(5, 2).repeat_interleave(5, 3)[
        :, :, :13, :11]
    w = torch.randn(72, 40, 3, 3, device="cuda")
    b = torch.randn(72, device="cuda")
    configs = (compact.Config(8, 8, 64, 16, 16, 16, 16, num_warps=4, num_stages=3),
               compact.Config(8, 16, 128, 32, 32, 32, 32, split=3, num_warps=8, num_stages=2, pack_split=2),
               compact.Config(4, 8, 32, 16, 64, 64, 64, num_warps=4, num_stages=2),
               compact.Config(8, 8, 128, 16, 32, 32, 64, split=2, num_warps=4, num_stages=3),
               compact.Config(16, 16, 128, 16, 32, 64, 64, num_warps=8, num_stages=3, pack_split=3))
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        for dtype in ((torch.float32,) if tf32 else (torch.float32, torch.float16, torch.bfloat16)):
            xx, ww, bb = x.to(dtype), w.to(dtype), b.to(dtype)
            for xl in (xx, xx.to(memory_format=torch.channels_last)):
                spec = check_conv(xl, ww, bb, 1, 1, 1, 1)
                for cfg in configs:
                    compact.run(xl, ww, bb, spec, "relu", cfg)
                    compact.run(xl, ww, None, with_pool(spec, "max", 2, 2, 0), None, cfg)
                    compact.run(xl, ww, bb, spec, "relu", cfg, skip=False)
    torch.backends.cudnn.allow_tf32 = False
    torch.cuda.synchronize()
    print("sanitize compact done")


def depthwise_kernel():
    from zeroskip.kernels import depthwise
    x = torch.randn(2, 70, 9, 7, device="cuda").relu_()
    # bf16 loads and stores as fp16 does; the smallest and largest tiles cover every edge (70 and 35 channels)
    for dtype in (torch.float32, torch.float16):
        for xx in (x.to(dtype), x.to(dtype).to(memory_format=torch.channels_last), x.to(dtype)[:, ::2, 1:]):
            c = xx.shape[1]
            for mult, k, s, p, d in ((1, 3, 1, 1, 1), (2, 5, 2, 2, 1), (1, 3, 1, 2, 2)):
                w = torch.randn(c * mult, 1, k, k, device="cuda", dtype=dtype)
                b = torch.randn(c * mult, device="cuda", dtype=dtype)
                spec = check_conv(xx, w, b, s, p, d, c)
                r = torch.randn(spec.batch, c * mult, spec.out_h, spec.out_w, device="cuda", dtype=dtype)
                for bp, bc, warps in ((8, 128, 2), (128, 64, 8)):
                    depthwise.conv(xx, w, b, spec, "relu6", tiles=(bp, bc, warps))
                    depthwise.conv(xx, w, None, spec, "relu", residual=r, tiles=(bp, bc, warps))
    torch.cuda.synchronize()
    print("sanitize depthwise done")


for part, run in (("direct", direct), ("winograd", winograd_paths), ("gemm", gemm), ("pgemm", persistent_gemm),
                  ("im2col", im2col_kernel), ("im2col_taps", lambda: im2col_kernel(taps=True)),
                  ("pool", pool_kernel), ("linear", linear_kernel),
                  ("tf32", tf32_paths), ("compact", compact_kernels), ("depthwise", depthwise_kernel)):
    if part in PARTS:
        run()
