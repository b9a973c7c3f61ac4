"""Picks the kernel for one call.

Algos (every name here is public and documented in the README):
  "torch"   PyTorch: F.conv2d (cuDNN on CUDA), then activation and pooling as separate ops.
  "ecr"     Zero-skipping implicit GEMM in exact fp32 on CUDA cores: per block of output pixels,
            the kernel indices whose input column holds a non-zero (the paper's ECR index lists,
            built on the fly) are the only ones multiplied. fp16/bf16 inputs are upcast; always
            fp32-accurate, whatever torch.backends.cudnn.allow_tf32 says.
  "ecr_tc"  The same zero skipping, products on tensor cores: fp16/bf16 natively, fp32 as TF32
            when torch.backends.cudnn.allow_tf32 is on (as F.conv2d), else as 3xTF32 (fp32-accurate).
  "igemm"   The same kernel with skipping off (dense implicit GEMM), tensor-core precision as "ecr_tc".
            TF32 reads NCHW input through a channels_last copy (kernels/layout.py, launch.tf32_input).
  "winograd" Winograd F(2x2, 3x3) for 3x3 stride-1 convs (groups 1, no pool or a 2x2/2 pool):
            2.25x fewer products, run as 16 batched GEMMs between two transform kernels
            (kernels/winograd.py). fp32 inputs: transforms and GEMMs in fp32 (3xTF32 or TF32 as
            "igemm"); fp16 and bf16: transforms in fp32, the transformed input and weight rounded
            to the input's dtype for 16-bit tensor-core GEMMs (fp32 accumulation), whose result
            the output transform reads in fp16 for fp16 input, in fp32 for bf16 (normwise error
            5e-4 fp16, 3e-3 bf16 on VGG-19, against 2e-4 and 1.7e-3 direct). No zero skipping.
  "winograd4" Winograd F(4x4, 3x3), same scope: 4x fewer products, run as 36 batched GEMMs
            between its own transform kernels (kernels/winograd4.py, interpolation points 0, +-3/4,
            +-3/2, which lose half the bits Lavin's 0, +-1, +-2 do); loses more bits than
            "winograd" (larger transform entries): normwise on VGG-19 (H200) 9.3e-4..9.8e-4 in
            TF32 (direct 7.5e-4; V and U rounded to TF32, not truncated; from 512 input channels or
            2048 tiles as scaled fp16, which holds TF32's 10 mantissa bits, into fp16 GEMMs at twice
            the TF32 rate, winograd4.tf32_fp16_pays), 1.1e-3..1.2e-3 in fp16
            (direct 2.1e-4), fp32-accurate with TF32 off (up to 1.9e-6 on VGG-19, H100: the GEMMs'
            sums stay in the tensor core up to 512 channels, kernels/winograd_gemm.py; from 256
            input channels, where measured faster (winograd4.halves_pay), V and U go as scaled
            fp16 halves into three fp16 products instead of three TF32 ones); bf16 input runs fp16
            GEMMs on V and U scaled by powers of 2 (the input's largest finite magnitude, U per
            output channel) so fp16's range holds any bf16 magnitude: 3.5e-3 against 3.3e-3 direct
            and 4.8e-3..5.4e-3 for F(2x2) on bf16 operands (conv + relu + pool, 256/512 channels on
            14x14..56x56 maps, interpreter; bf16 GEMMs would give 8.7e-3 in emulation). inf and NaN
            in the input do not set the scale: they reach only the tiles whose patches hold them.
  "im2col"  Implicit GEMM reducing over (input channel, kernel tap) pairs, BLOCK_K at a time, for
            layers with few input channels per group (a 3-channel 3x3 first layer: 27 columns
            where "igemm" pads each tap to 16 channels, 144); tensor-core precision as "igemm"
            (kernels/im2col.py). No zero skipping.
  "auto"    On CUDA, the active plan's measured choice for this exact call (zeroskip.plan: op,
            geometry with batch and pooling, dtype, TF32 switch, activation, channels_last) when
            it has an entry; else "igemm", "winograd", "winograd4" or "im2col" for the layer
            families measured faster than cuDNN (measured_best: VGG-style 3x3 convs in fp32, in
            TF32 with NCHW input, in fp16 and in bf16 on 512 channels, their fused conv + relu + pool stages in fp32, TF32, fp16 and bf16,
            3-channel first layers; see BENCHMARKS.md) and "torch" for everything else; "ecr" on the CPU interpreter;
            "torch" wherever kernels cannot run.
"""
from __future__ import annotations

import os

import torch

from . import plan
from .geometry import KERNEL_DTYPES, MAX_WINDOW

KERNEL_ALGOS = ("ecr", "ecr_tc", "igemm", "winograd", "winograd4", "im2col")
WINOGRAD_TILES = {"winograd": 2, "winograd4": 4}
ALGOS = ("auto", "torch") + KERNEL_ALGOS


def interpreting() -> bool:
    """Triton's CPU interpreter is on (it must be set before any kernel is defined)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernels_can_run(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


def measured_faster(input, spec, activation) -> bool:
    """The layer families where the dense kernel ("igemm") was measured faster than cuDNN on every
    layer tried (H200, realistic VGG-19 inputs, graph-replayed, `zeroskip bench --algo igemm`;
    BENCHMARKS.md): 3x3, stride 1, padding 1, no dilation or groups, with no pool or a 2x2/2
    max-pool after relu; batch 1..32.
      fp32, TF32 off (3xTF32, fp32-accurate), NCHW or channels_last, 64..512 input channels:
        convs and fused stages at batch 1 and 32 (Winograd or direct, measured_best).
      TF32, channels_last, fused with the pool, 64..512 channels: 1.54-2.98x at batch 1,
        1.04-1.97x at batch 32. Plain TF32 convs in channels_last ran 0.50-1.26x (H100): cuDNN.
      TF32, NCHW (PyTorch's default), 64..512 channels, with the _tf32_nchw picks (H100): fused
        stages 1.78-3.14x at batch 1 and 32; convs 1.24-2.20x (features.7 and .10 at batch 32 from
        the same-run A/B in _tf32_nchw's docstring, 1.39x and 1.52x).
      fp16 and bf16, channels_last, fused with the pool, 64..512 channels: 2.19-3.81x at
        batch 1, 1.23-2.55x at batch 32.
      fp16, channels_last, plain conv: 3 or 64..128 input channels on maps of 56x56 or more
        1.20-2.27x at batch 1 and 32; 256 channels on 28x28 and 56x56 maps 1.13-1.40x at batch 1
        (0.98-1.09x at batch 32); 512 channels on 14x14 maps 1.23-1.47x at batch 32 (1.03x at
        batch 1, where Winograd F(2x2) ran 1.77x); 512 channels on 28x28 maps under Winograd
        F(4x4) 1.44x at batch 1 and 1.53x at batch 32 (direct 0.89-1.12x; measured_best).
        GoogLeNet's 96..128-channel
        convs on 28x28 and 14x14 maps ran 0.94-1.07x (H100): cuDNN there.
      bf16, channels_last, plain conv, 512 input channels (H100, same run,
        benchmarks/vgg19-bf16-winograd4-ab-h100.txt): F(2x2) 1.39x / 1.63x on 28x28 / 14x14 maps
        at batch 1 (direct 1.04x / 1.04x), F(4x4) 1.12x on 28x28 at batch 32 (direct 0.86x); on
        14x14 at batch 32 neither won (0.99x direct, 0.94x F(4x4)): cuDNN. 64..128 input channels
        on maps of 56x56 or more (H200, same run, scripts/ab_rows.py --plain): features.2 / .5 /
        .7 / .10 1.98x / 1.97x / 1.79x / 1.64x direct at batch 1, 1.59x / 1.62x / 1.19x / 1.35x at
        batch 32. Other bf16 plain convs stay on cuDNN: the one other measured, features.12 (256
        channels, 56x56), ran 1.22x / 0.96x direct at batch 1 / 32.
    Everything else stays on cuDNN unless a plan measured it (zeroskip.plan)."""
    geometry = (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w,
                spec.dil_h, spec.dil_w, spec.groups)
    if geometry != (3, 3, 1, 1, 1, 1, 1, 1, 1) or (spec.out_h, spec.out_w) != (spec.height, spec.width):
        return False
    pool = (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw)
    if spec.pool and not (spec.pool == "max" and activation == "relu" and pool == (2, 2, 2, 2, 0, 0)):
        return False
    c, batch, pixels = spec.in_channels, spec.batch, spec.height * spec.width
    if input.dtype == torch.float32:
        if not torch.backends.cudnn.allow_tf32:
            return batch <= 32 and 64 <= c <= 512
        if input.is_contiguous():  # TF32 NCHW (_tf32_nchw): VGG-19's maps, 14x14 and up
            return batch <= 32 and 64 <= c <= 512 and pixels >= 14 * 14
        return (bool(spec.pool) and input.is_contiguous(memory_format=torch.channels_last)
                and 64 <= c <= 512 and batch <= 32)
    if not input.is_contiguous(memory_format=torch.channels_last) or batch > 32:
        return False
    if spec.pool:
        return input.dtype in (torch.float16, torch.bfloat16) and 64 <= c <= 512
    if input.dtype == torch.bfloat16:  # plain bf16 convs: Winograd on 512 channels (_tensor_core_winograd)
        return (64 <= c <= 128 and pixels >= 56 * 56) or (c == 512 and (pixels == 28 * 28
                                                                       or (pixels == 14 * 14 and batch < 16)))
    if input.dtype != torch.float16:
        return False
    if (c == 3 or 64 <= c <= 128) and pixels >= 56 * 56:
        return True
    return (c == 256 and batch == 1 and pixels >= 28 * 28) or (c == 512 and pixels in (14 * 14, 28 * 28))


def few_channels_measured_faster(input, spec) -> bool:
    """First layers where "im2col" beat cuDNN (H200, scripts/ab_algos.py, then `zeroskip bench`
    with sizes as compile-time constants): 3 input channels, no pool, maps of 56x56 or more,
    batch 1 and 32. fp32 with TF32 off, NCHW: VGG-19 features.0 (3x3, 27 columns) 3.20x / 3.70x,
    GoogLeNet conv1 (7x7 stride 2, 147 columns) 1.83x / 2.10x; fp16 channels_last: VGG-19
    features.0 4.51x / 5.83x ("igemm" 2.07x / 2.03x). AlexNet's conv1 fused with its 3x3 pool
    (11x11 stride 4, 363 columns) lost before the constants: 0.76x / 0.41x."""
    if spec.in_per_group > 4 or spec.groups != 1 or spec.pool or spec.batch > 32:
        return False
    if spec.out_h * spec.out_w < 56 * 56 or spec.reduction > 160:
        return False
    if input.dtype == torch.float32:
        return not torch.backends.cudnn.allow_tf32 and input.is_contiguous()
    return (input.dtype == torch.float16 and input.is_contiguous(memory_format=torch.channels_last)
            and (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w) == (3, 3, 1, 1))


def measured_best(input, spec, activation) -> str:
    """"im2col" for the first layers of few_channels_measured_faster; "igemm", "winograd" or
    "winograd4" where measured faster than cuDNN (measured_faster); else "torch".

    fp32 with TF32 off, NCHW: the three against each other and cuDNN in one run per layer, VGG-19
    at batch 1 and 32 (H200, scripts/ab_algos.py, BENCHMARKS.md). Winograd F(4x4) won wherever
    the map gives it enough tiles (batch x 4x4 tiles >= 196, e.g. 56x56 at batch 1): convs from
    128 input channels (features.12 at batch 32: 3.71x of cuDNN against 2.39x for F(2x2) and
    2.02x direct), fused stages from 64 (features.2: 2.57x against 2.05x direct). With fewer
    tiles (28x28 and 14x14 at batch 1) F(2x2) won from 256 channels (features.30: 5.23x against
    2.56x for F(4x4) and 3.73x direct). F(4x4) won the 64-to-128-channel conv once the NCHW
    output rows went out as vector stores (features.5: 3.04x / 2.53x against 2.71x / 2.11x at
    batch 1 / 32, benchmarks/vgg19-fp32-64ch-winograd4-ab-h200.txt), and the 64-to-64 one once
    its GEMMs ran on kernels/winograd_gemm.py (features.2: 2.80x / 2.39x against 2.60x / 2.09x,
    benchmarks/vgg19-fp32-features2-winograd4-ab-h200.txt; before, direct led it 2.61x to 2.44x
    at batch 1). On the H100, with 30% less memory bandwidth for the transforms, direct kept that
    one (_fast_memory).

    fp16, channels_last, 512 input channels (V and U in fp16, kernels/winograd.py; same run,
    H200, benchmarks/vgg19-fp16-winograd-ab-h200.txt): on 28x28 maps F(4x4) won, fused stage
    features.25 3.33x / 1.57x of cuDNN at batch 1 / 32 against 2.23x / 1.18x direct, conv
    features.21 1.38x / 1.27x against 0.97x / 0.89x; on 14x14 maps F(2x2) won at batch 1 (fused
    features.34 4.24x against 3.07x, conv features.30 1.66x against 1.07x) and direct at batch
    32 (1.74x against 1.64x for F(4x4), 1.21x against 1.12x). Batches between are unmeasured:
    F(2x2) up to 15, as the plain-conv rule switches at 16. With M in fp16 too (next run,
    benchmarks/vgg19-fp16-winograd-m16-ab-h200.txt) F(4x4) also won the fused 256-channel 56x56
    stage: features.16 3.51x / 1.60x, where direct ran 3.02x / 1.50x in the run before, and
    F(4x4) overtook direct on 14x14 maps at batch 32: fused features.34 1.96x against 1.72x
    (F(2x2) 1.55x), conv features.30 1.35x against 1.22x (F(2x2) 1.03x)
    (benchmarks/vgg19-fp16-b32-winograd4-ab-h200.txt). Direct kept everywhere else: it won the
    fused 128-channel 112x112 stage features.7 at batch 32, 2.10x against 1.32x for F(4x4).

    bf16 fused stages, 512 input channels: F(2x2) (V and U in bf16) won at batch 1, features.25
    3.19x and features.34 4.12x against 2.23x and 2.99x direct, and lost at batch 32 (0.97x and
    1.21x against 1.23x and 1.73x) (benchmarks/vgg19-bf16-winograd-ab-h200.txt). Below batch 16,
    as for fp16. F(4x4) on scaled fp16 GEMMs (kernels/winograd.py's run_steps) won the 28x28
    stage at batch 32, features.25 1.50x against 1.32x direct, and lost the 14x14 one (1.41x
    against 1.53x) and the 256-channel 56x56 one (1.21x against 1.58x) (H100, same run,
    benchmarks/vgg19-bf16-winograd4-ab-h100.txt). With V's scale from one Triton finite-max pass
    instead of torch.aminmax it took the 14x14 stage too: features.34 at
    batch 32 1.59x against 1.53x direct; the 56x56 one stayed direct, 1.45x against 1.65x (H100,
    same run, benchmarks/vgg19-bf16-fused-algos-ab-h100.txt). On the H200 F(4x4) took that one too
    at batch 32: features.16 194.5 us (1.70x) against 217.6 us (1.52x) direct; at batch 1 direct
    kept it, 3.03x against 2.53x (batches between unmeasured: from 16, as the 512-channel rule; same run,
    benchmarks/vgg19-bf16-fused-algos-ab-h200.txt).

    TF32 fused stages, channels_last (measured with V, U and M in fp32 and TF32 GEMMs; V and U are
    now scaled fp16 where winograd4.tf32_fp16_pays, not re-measured in channels_last): F(2x2) won
    at batch 1 on 512 channels (features.25 2.59x and features.34 3.83x against 1.52x and 2.88x
    direct) and lost
    at batch 32 (0.94x, 1.02x against 1.04x, 1.17x) (benchmarks/vgg19-tf32-winograd-ab-h200.txt).
    F(4x4), once its points were changed and V and U rounded to TF32 (error 2.2e-3 -> 9.8e-4,
    direct 7.6e-4), won at batch 32 on 512 channels (features.25 1.59x against 1.25x direct,
    features.34 1.33x against 1.29x) and at batch 1 on the 256-channel 56x56 stage (features.16
    2.44x against 2.19x; at batch 32 1.36x against 1.45x)
    (benchmarks/vgg19-tf32-winograd4-points-ab-h200.txt). With its GEMMs on their own kernel
    (kernels/winograd_gemm.py) F(4x4) took features.16 at batch 32 too: 1.51x against 1.44x direct;
    direct kept features.7 (1.64x against 1.24x) (benchmarks/vgg19-winograd-gemm-ab-h200.txt).
    With M in fp16 under a pool (winograd.run_steps; H200, same run, batch 32,
    benchmarks/vgg19-tf32-m16-ab-h200.txt) F(4x4) took features.7 at batch 32 too: 423.2 us
    (1.82x) against 442.3 us (1.74x) direct; features.16 / .25 / .34 ran 2.24x / 2.83x / 2.37x
    against 1.79x / 2.38x / 1.99x with fp32 M. Direct kept features.2 (693.1 against 753.2 us)
    and every 128-channel stage at batch 1 (features.7: 17.2 against 19.5 us)."""
    if few_channels_measured_faster(input, spec):
        return "im2col"
    if not measured_faster(input, spec, activation):
        return "torch"
    if input.dtype == torch.float32 and not torch.backends.cudnn.allow_tf32 and input.is_contiguous():
        from .kernels.winograd import supports
        c = spec.in_channels
        tiles = spec.batch * -(-spec.out_h // 4) * -(-spec.out_w // 4)
        if tiles >= 196 and c >= 64 and supports(spec, tile=4) is None and (c > 64 or _fast_memory(input.device)):
            return "winograd4"
        if c >= 256 and supports(spec) is None:
            return "winograd"
    if input.dtype == torch.float32 and torch.backends.cudnn.allow_tf32 and input.is_contiguous():
        pick = _tf32_nchw(spec)
    else:
        pick = _tensor_core_winograd(input.dtype, spec, input.device)
    if pick not in (None, "igemm"):
        from .kernels.winograd import supports
        if supports(spec, tile=4 if pick == "winograd4" else 2) is None:
            return pick
    return "igemm"


def _fast_memory(device) -> bool:
    """At least 4 TB/s of DRAM bandwidth (an H200, not an H100). The 64-channel convs move the
    most transform bytes per product: on the H100, F(4x4) ran VGG-19 features.2 at 1.95x /
    2.29x of cuDNN against 2.07x / 2.55x direct at batch 32 / 1, on the H200 2.39x / 2.80x
    against 2.09x / 2.60x (same-run A/Bs, benchmarks/vgg19-fp32-h100-algos-ab.txt and
    vgg19-fp32-features2-winograd4-ab-h200.txt). With its 3xTF32 sums in running accumulators
    (launch._Launch, RUNNING_MAX_K) direct also took the 64-to-128 one on the H100: features.5 at
    batch 32 in 628.7 us (2.50x, benchmarks/vgg19-fp32-igemm-running-ab-h100.txt), where F(4x4)
    took 659.0 us in another run that day (2.39x, vgg19-fp32-winograd4-rows-ab-h100.txt; cuDNN
    1571-1572 us in both); at batch 1 they tie across runs (23.4-23.7 against 23.3-23.4 us). Same
    run, the fused 64-to-64 stage features.2 + pool: 2.71x / 3.09x direct against 2.51x / 3.04x
    at batch 32 / 1 (vgg19-fp32-igemm-running-ab-h100.txt).
    On the H200 the direct kernel's running sums are unmeasured."""
    from .kernels.split_k import memory_bandwidth
    return memory_bandwidth(device) >= 4e12


def _tf32_nchw(spec) -> str:
    """TF32 with NCHW input, PyTorch's default for an fp32 model (torch.backends.cudnn.allow_tf32 is on
    unless turned off), against cuDNN in the same layout.
      Under 128 input channels, and under 256 on maps of 56x56 or more (the 128-channel layers
        measured): direct, which reads the input through a channels_last copy (launch.tf32_input). H100, same run (benchmarks/vgg19-tf32-nchw-ab-h100.txt): fused
        conv + relu + pool features.2 / .7 2.17x / 1.81x at batch 32 and 2.37x / 2.34x at batch 1,
        against 1.49x / 1.53x and 1.66x / 1.85x for F(4x4) (on fp16 V and U); plain convs
        features.7 / .10 1.39x / 1.52x at batch 32, 1.86x / 1.68x at batch 1, against 1.03x / 1.17x
        and 1.54x / 1.65x (benchmarks/vgg19-tf32-nchw-conv128-ab-h100.txt).
      Fused from 128 channels at batch 16 and up: F(4x4), whose M is fp16 under a pool
        (winograd.run_steps). H200, same run (benchmarks/vgg19-tf32-m16-ab-h200.txt): features.7 + pool
        at batch 32 in 431.4 us (2.16x), where direct took 538.8 us in the suite before (1.74x); at
        batch 1 F(4x4) takes fp32 V and M (784 tiles, winograd4.tf32_fp16_pays) and direct kept it,
        20.6 against 21.6 us. Batches 2-15 unmeasured: from 16, as the other rules.
      Else, fused: F(4x4) (features.16, .25, .34 at batch 32: 1.75x, 2.17x, 1.98x
        against 1.64x, 1.37x, 1.47x direct), F(2x2) for 512 channels below batch 16, as in
        channels_last (H200, benchmarks/vgg19-tf32-nchw-ab-h200.txt: 1.80x-1.98x at batch 1).
      Else, plain convs: F(4x4) (H200: features.12 1.22x / 1.65x at batch 32 / 1,
        features.21 1.47x / 1.57x, features.30 1.16x at batch 32), but direct on 14x14 maps below
        batch 16 (features.30 at batch 1: 2.04x against 1.59x)."""
    c, small, pixels = spec.in_channels, spec.batch < 16, spec.height * spec.width
    if spec.pool and c >= 128 and not small:
        return "winograd4"
    if c < 128 or (c < 256 and pixels >= 56 * 56):  # 128..255 channels measured on 56x56 maps and up only
        return "igemm"
    if spec.pool:
        return "winograd" if c == 512 and small else "winograd4"
    if small and pixels <= 14 * 14:
        return "igemm"
    return "winograd4"


def _tensor_core_winograd(dtype, spec, device) -> str | None:
    """The 16-bit and TF32 layers where Winograd beat the direct kernel (measured_best's docstring)."""
    c, pixels, small_batch = spec.in_channels, spec.height * spec.width, spec.batch < 16
    if dtype == torch.float16:
        if c == 256 and spec.pool and pixels == 56 * 56:
            return "winograd4"
        if c == 512 and pixels == 28 * 28:
            return "winograd4"
        if c == 512 and pixels == 14 * 14:
            return "winograd" if small_batch else "winograd4"
    if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 and spec.pool:
        if c == 512 and pixels in (14 * 14, 28 * 28):
            return "winograd" if small_batch else "winograd4"
        if c == 256 and pixels == 56 * 56:
            return "winograd4"
        if c == 128 and pixels == 112 * 112 and not small_batch:
            return "winograd4"  # on fp16 M (measured_best's docstring)
    if dtype == torch.bfloat16 and c == 256 and spec.pool and pixels == 56 * 56 and not small_batch:
        # F(4x4)'s transform bytes cost less where memory moves >= 4 TB/s (measured_best's docstring)
        return "winograd4" if _fast_memory(device) else None
    if dtype == torch.bfloat16 and c == 512 and pixels in (14 * 14, 28 * 28):
        if small_batch:
            return "winograd"
        if pixels == 28 * 28 or spec.pool:
            return "winograd4"
    return None


def offsets_fit(input, spec) -> bool:
    """The kernels index within one image in int32 (batch and group offsets are int64): the
    farthest element of one input image and of one output image must lie below 2**31."""
    span = sum((n - 1) * abs(st) for n, st in zip(input.shape[1:], input.stride()[1:]))
    return span < 2**31 and spec.out_channels * spec.result_h * spec.result_w < 2**31


def choose(algo, input: torch.Tensor, spec, activation=None) -> str:
    """Returns the algo to run; raises for unknown names and for kernels that cannot run here.

    Cheap on every call: the plan key is built from spec, dtype and flags (no allocation, no sync).
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if algo == "torch":
        return "torch"
    runnable = kernels_can_run(input.device) and input.dtype in KERNEL_DTYPES
    if algo == "auto":
        if not runnable:
            return "torch"
        if spec.window_rows > MAX_WINDOW or not offsets_fit(input, spec):
            return "torch"  # too large a pool window, or an image past int32 indexing
        if input.device.type == "cpu":
            return "ecr"
        # Measured on an H100 (BENCHMARKS.md): the kernels beat cuDNN on some layers and lose on
        # others, so without a measurement for this layer the pick is cuDNN, except the
        # families measured faster everywhere they were tried.
        op = "conv2d_pool" if spec.pool else "conv2d"
        return plan.lookup(op, spec, input, activation) or measured_best(input, spec, activation)
    if input.dtype not in KERNEL_DTYPES:
        raise TypeError(f"algo={algo!r} supports dtypes {KERNEL_DTYPES}, got input dtype {input.dtype}")
    if not offsets_fit(input, spec):
        raise ValueError(f"input of shape {tuple(input.shape)} and strides {input.stride()} spans 2**31 or more "
                         f"elements per image; algo={algo!r} indexes images in int32 (use algo='torch')")
    if algo in WINOGRAD_TILES:
        from .kernels.winograd import supports
        why = supports(spec, tile=WINOGRAD_TILES[algo])
        if why is not None:
            raise ValueError(f"algo={algo!r} cannot run this call: {why} (use algo='igemm')")
    if not kernels_can_run(input.device):
        raise RuntimeError(
            f"algo={algo!r} needs a CUDA tensor (or TRITON_INTERPRET=1 set before importing zeroskip "
            f"to run the kernels on the CPU interpreter); got input on {input.device}")
    return algo
