"""algo="auto"'s rules: per GPU class, rows of conditions on a call's features -> the algo that was
measured faster than cuDNN there. The first row whose conditions all hold and whose kernel supports
the call wins; no row means "torch" (cuDNN). A GPU class without rows runs cuDNN everywhere unless a
plan measured the call (zeroskip.plan).

Features (Features below): precision ("fp32" with TF32 off, "tf32", "fp16", "bf16"); nchw and
channels_last (the input is dense in that order; both hold when C == 1 or H == W == 1); geometry
("3x3": VGG's conv, 3x3 kernel, stride 1, padding 1, no dilation, one group; "other"); kernel
("KHxKW/S", any padding); pool ("none", "max2": a 2x2/2 max pool after relu, "other"); channels
(input), groups, reduction (channels per group x taps); pixels (input map), out_pixels; batch;
tiles (Winograd F(4x4) tiles: batch x ceil(out_h / 4) x ceil(out_w / 4)); fast_memory (>= 4 TB/s:
an H200, not an H100).

A condition is a value, a tuple of allowed values, or a Span (between, at_least, at_most). Each row's
evidence names the measurement (BENCHMARKS.md section, result file under benchmarks/). The speedups
quoted are over cuDNN on VGG-19 layers (features.N) at realistic sparsity, graph-replayed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """lo <= value <= hi."""
    lo: float = -math.inf
    hi: float = math.inf

    def __contains__(self, value) -> bool:
        return self.lo <= value <= self.hi

    def __repr__(self) -> str:
        if self.lo == -math.inf:
            return f"<= {self.hi:g}"
        return f">= {self.lo:g}" if self.hi == math.inf else f"{self.lo:g}..{self.hi:g}"


def between(lo, hi) -> Span:
    return Span(lo, hi)


def at_least(lo) -> Span:
    return Span(lo=lo)


def at_most(hi) -> Span:
    return Span(hi=hi)


@dataclass(frozen=True)
class Features:
    precision: str
    nchw: bool
    channels_last: bool
    geometry: str
    kernel: str
    pool: str
    channels: int
    groups: int
    reduction: int
    pixels: int
    out_pixels: int
    batch: int
    tiles: int
    fast_memory: bool


def features(spec, precision: str, nchw: bool, channels_last: bool, activation, fast_memory: bool) -> Features:
    """The features of one call (a checked ConvSpec, with its pool)."""
    vgg = (spec.kernel_h, spec.kernel_w, spec.stride_h, spec.stride_w, spec.pad_h, spec.pad_w, spec.dil_h,
           spec.dil_w, spec.groups) == (3, 3, 1, 1, 1, 1, 1, 1, 1)
    stride = f"{spec.stride_h}" if spec.stride_h == spec.stride_w else f"{spec.stride_h}x{spec.stride_w}"
    if not spec.pool:
        pool = "none"
    elif (spec.pool == "max" and activation == "relu"
          and (spec.pool_kh, spec.pool_kw, spec.pool_sh, spec.pool_sw, spec.pool_ph, spec.pool_pw) == (2, 2, 2, 2, 0, 0)):
        pool = "max2"
    else:
        pool = "other"
    return Features(
        precision=precision, nchw=nchw, channels_last=channels_last, geometry="3x3" if vgg else "other",
        kernel=f"{spec.kernel_h}x{spec.kernel_w}/{stride}", pool=pool, channels=spec.in_channels,
        groups=spec.groups, reduction=spec.reduction, pixels=spec.height * spec.width,
        out_pixels=spec.out_h * spec.out_w, batch=spec.batch,
        tiles=spec.batch * -(-spec.out_h // 4) * -(-spec.out_w // 4), fast_memory=fast_memory)


@dataclass(frozen=True)
class Rule:
    algo: str
    evidence: str
    when: tuple  # ((feature, condition), ...)

    def holds(self, f: Features) -> bool:
        for name, cond in self.when:
            value = getattr(f, name)
            if isinstance(cond, Span) or isinstance(cond, tuple):
                if value not in cond:
                    return False
            elif value != cond:
                return False
        return True

    def __str__(self) -> str:
        conds = ", ".join(f"{k}={v!r}" if not isinstance(v, Span) else f"{k} {v!r}" for k, v in self.when)
        return f"{conds}; evidence: {self.evidence}"


def rows(common: dict, *items) -> tuple:
    """Rules sharing the conditions in common: items are (algo, evidence, {feature: condition}); a
    feature conditioned in both must meet both."""
    return tuple(Rule(algo, evidence, tuple(common.items()) + tuple(when.items())) for algo, evidence, when in items)


def first_match(rules, f: Features, supported) -> Rule | None:
    """The first rule that holds for f and whose algo supported(algo) accepts."""
    for rule in rules:
        if rule.holds(f) and supported(rule.algo):
            return rule
    return None


VGG = dict(geometry="3x3", batch=at_most(32))
POOLS = ("none", "max2")
SMALL, LARGE = at_most(15), between(16, 32)  # batches below 16 and from 16 (the measured 1 and 32)
FIRST_LAYERS = dict(channels=at_most(4), groups=1, reduction=at_most(160), pool="none", batch=at_most(32),
                    out_pixels=at_least(56 * 56))
IM2COL = "BENCHMARKS.md 2026-11-27 'Winograd F(4x4), im2col' (benchmarks/first-layers-im2col-ab-h200.txt)"
FP32_AB = "benchmarks/vgg19-fp32-winograd4-ab-h200.txt (BENCHMARKS.md 2026-11-27 'Winograd F(4x4), im2col')"
TF32_NCHW = "benchmarks/vgg19-tf32-nchw-ab-h100.txt, vgg19-tf32-nchw-ab-h200.txt (BENCHMARKS.md 2026-11-28 H100)"
FP16_WINO = "benchmarks/vgg19-fp16-winograd-ab-h200.txt, vgg19-fp16-b32-winograd4-ab-h200.txt (BENCHMARKS.md 2026-11-27)"
MOBILENET = "benchmarks/model-mobilenet_v2-fp16-h100-1207-layers.csv"
BF16_WINO = "benchmarks/vgg19-bf16-winograd-ab-h200.txt, vgg19-bf16-winograd4-ab-h100.txt (BENCHMARKS.md 2026-11-27)"

HOPPER = (
    # First layers, 3 input channels: im2col's 27 columns where igemm pads each tap to 16 channels.
    *rows(FIRST_LAYERS,
          ("im2col", "fp32 NCHW: features.0 3.20x / 3.70x at batch 1 / 32, GoogLeNet conv1 1.83x / 2.10x, H200; "
                     + IM2COL, dict(precision="fp32", nchw=True)),
          ("im2col", "fp16: features.0 4.51x / 5.83x (igemm 2.07x / 2.03x), H200; " + IM2COL,
           dict(precision="fp16", channels_last=True, kernel="3x3/1"))),
    # The 7x7/s2 stem of ResNet and GoogLeNet (3 channels) in fp16 below batch 16, alone or with ResNet's
    # 3x3/2/1 max pool after it; cuDNN's fused conv (the last row) wins at batch 32.
    *rows(dict(FIRST_LAYERS, pool=("none", "other"), precision="fp16", channels_last=True, kernel="7x7/2",
               batch=SMALL),
          ("im2col", "at batch 1: conv + ReLU 7.7 us (cuDNN's fused 12.7, F.conv2d + ReLU 17.6), with the pool "
                     "19.9 us (32.6, 37.6); at batch 32 109.9 / 229.1 us against cuDNN's 82.5 / 197.7, H100, "
                     "benchmarks/stem-probe-fp16-h100-1207.txt", {})),
    # fp32, TF32 off (3xTF32 products, fp32-accurate): F(4x4) with >= 196 tiles, F(2x2) from 256 channels.
    *rows(dict(VGG, precision="fp32", pool=POOLS, channels=between(64, 512)),
          ("winograd4", "features.12 at batch 32 3.71x (F(2x2) 2.39x, direct 2.02x), H200; " + FP32_AB,
           dict(nchw=True, channels=between(65, 512), tiles=at_least(196))),
          ("winograd4", "64 channels on an H200: features.2 2.80x / 2.39x at batch 1 / 32 against 2.60x / 2.09x "
                        "direct (benchmarks/vgg19-fp32-features2-winograd4-ab-h200.txt); the H100 keeps direct "
                        "(benchmarks/vgg19-fp32-igemm-running-ab-h100.txt)",
           dict(nchw=True, channels=64, tiles=at_least(196), fast_memory=True)),
          ("winograd", "few tiles from 256 channels: features.30 at batch 1 5.23x (F(4x4) 2.56x, direct "
                       "3.73x), H200; " + FP32_AB, dict(nchw=True, channels=between(256, 512))),
          ("igemm", "every VGG-19 conv and fused stage, batch 1 and 32, NCHW and channels_last (H100, H200; "
                    "BENCHMARKS.md 'VGG-19 per layer')", {})),
    # TF32, NCHW input (PyTorch's default for fp32 models); maps of 14x14 and more.
    *rows(dict(VGG, precision="tf32", nchw=True, pool=POOLS, channels=between(64, 512), pixels=at_least(14 * 14)),
          ("winograd4", "fused from 128 channels at batch >= 16 on fp16 M: features.7 + pool 2.16x (direct "
                        "1.74x), H200, benchmarks/vgg19-tf32-m16-ab-h200.txt",
           dict(pool="max2", channels=at_least(128), batch=LARGE)),
          ("igemm", "under 128 channels: direct on a channels_last copy, features.2 + pool 2.17x / 2.37x at "
                    "batch 32 / 1 (F(4x4) 1.49x / 1.66x), H100; " + TF32_NCHW, dict(channels=at_most(127))),
          ("igemm", "128-255 channels on maps of 56x56 and up: features.7 / .10 1.39x / 1.52x at batch 32 (F(4x4) "
                    "1.03x / 1.17x), H100, benchmarks/vgg19-tf32-nchw-conv128-ab-h100.txt",
           dict(channels=at_most(255), pixels=at_least(56 * 56))),
          ("winograd", "fused 512 channels below batch 16: 1.80x-1.98x at batch 1, H200; " + TF32_NCHW,
           dict(pool="max2", channels=512, batch=SMALL)),
          ("winograd4", "fused from 256 channels: features.16 / .25 / .34 at batch 32 1.75x / 2.17x / 1.98x "
                        "(direct 1.64x / 1.37x / 1.47x), H200; " + TF32_NCHW,
           dict(pool="max2", channels=at_most(511))),
          ("igemm", "14x14 maps below batch 16: features.30 at batch 1 2.04x (F(4x4) 1.59x), H200; " + TF32_NCHW,
           dict(pool="none", batch=SMALL, pixels=at_most(14 * 14))),
          ("winograd4", "plain convs from 128 channels: features.12 1.22x / 1.65x at batch 32 / 1, features.21 "
                        "1.47x / 1.57x, H200; " + TF32_NCHW, dict(pool="none")),
          ("igemm", "where a Winograd row above cannot run the call", {})),
    # TF32, channels_last: fused stages only (plain convs ran 0.50-1.26x, H100).
    *rows(dict(VGG, precision="tf32", nchw=False, channels_last=True, pool="max2"),
          ("winograd", "512 channels below batch 16: features.25 / .34 2.59x / 3.83x (direct 1.52x / 2.88x), "
                       "H200, benchmarks/vgg19-tf32-winograd-ab-h200.txt",
           dict(channels=512, pixels=(14 * 14, 28 * 28), batch=SMALL)),
          ("winograd4", "512 channels from batch 16: features.25 1.59x (direct 1.25x), H200, "
                        "benchmarks/vgg19-tf32-winograd4-points-ab-h200.txt",
           dict(channels=512, pixels=(14 * 14, 28 * 28), batch=LARGE)),
          ("winograd4", "features.16: 2.44x at batch 1 (direct 2.19x), 1.51x at batch 32 (1.44x), H200, "
                        "benchmarks/vgg19-winograd-gemm-ab-h200.txt", dict(channels=256, pixels=56 * 56)),
          ("winograd4", "features.7 at batch 32 on fp16 M: 423.2 us against 442.3 direct, H200, "
                        "benchmarks/vgg19-tf32-m16-ab-h200.txt", dict(channels=128, pixels=112 * 112, batch=LARGE)),
          ("igemm", "fused stages 1.54-2.98x at batch 1, 1.04-1.97x at batch 32, H200 "
                    "(benchmarks/vgg19-tf32-tiles-ab-h200.txt)", dict(channels=between(64, 512)))),
    # fp16, channels_last.
    *rows(dict(VGG, precision="fp16", channels_last=True),
          ("winograd4", "fused features.16 3.51x / 1.60x at batch 1 / 32 (direct 3.02x / 1.50x), H200, "
                        "benchmarks/vgg19-fp16-winograd-m16-ab-h200.txt",
           dict(pool="max2", channels=256, pixels=56 * 56)),
          ("winograd4", "28x28 maps: fused features.25 3.33x / 1.57x, conv features.21 1.38x / 1.27x at batch "
                        "1 / 32 (direct 2.23x / 1.18x, 0.97x / 0.89x), H200; " + FP16_WINO,
           dict(pool=POOLS, channels=512, pixels=28 * 28)),
          ("winograd", "14x14 maps below batch 16: fused features.34 4.24x (direct 3.07x), conv features.30 "
                       "1.66x (1.07x) at batch 1, H200; " + FP16_WINO,
           dict(pool=POOLS, channels=512, pixels=14 * 14, batch=SMALL)),
          ("winograd4", "14x14 maps from batch 16: fused features.34 1.96x (direct 1.72x), conv features.30 "
                        "1.35x (1.22x) at batch 32, H200; " + FP16_WINO,
           dict(pool=POOLS, channels=512, pixels=14 * 14, batch=LARGE)),
          ("igemm", "fused stages 2.19-3.81x at batch 1, 1.23-2.55x at batch 32, H200 (BENCHMARKS.md "
                    "2026-11-28 'fused targets in every dtype')", dict(pool="max2", channels=between(64, 512))),
          ("igemm", "convs of 64-128 channels on maps of 56x56 and up: 1.20-2.27x at batch 1 and 32, H200 "
                    "(GoogLeNet's 96-128-channel convs on 28x28 and 14x14 ran 0.94-1.07x, H100)",
           dict(pool="none", channels=between(64, 128), pixels=at_least(56 * 56))),
          ("igemm", "256-channel convs at batch 1: 1.13-1.40x on 28x28 and 56x56 maps (0.98-1.09x at batch "
                    "32), H200", dict(pool="none", channels=256, batch=1, pixels=at_least(28 * 28))),
          ("igemm", "where a Winograd row above cannot run the call",
           dict(pool="none", channels=512, pixels=(14 * 14, 28 * 28)))),
    # bf16, channels_last.
    *rows(dict(VGG, precision="bf16", channels_last=True),
          ("winograd4", "fused features.16 from batch 16 on an H200: 194.5 us (1.70x) against 217.6 us direct; "
                        "the H100 keeps direct (1.65x against 1.45x), benchmarks/vgg19-bf16-fused-algos-ab-h200.txt",
           dict(pool="max2", channels=256, pixels=56 * 56, batch=LARGE, fast_memory=True)),
          ("winograd", "512 channels below batch 16: fused features.25 / .34 3.19x / 4.12x (direct 2.23x / "
                       "2.99x), conv 1.39x / 1.63x on 28x28 / 14x14 (direct 1.04x); " + BF16_WINO,
           dict(pool=POOLS, channels=512, pixels=(14 * 14, 28 * 28), batch=SMALL)),
          ("winograd4", "28x28 maps from batch 16, on scaled fp16 GEMMs: fused features.25 1.50x (direct 1.32x), "
                        "conv 1.12x (0.86x), H100; " + BF16_WINO,
           dict(pool=POOLS, channels=512, pixels=28 * 28, batch=LARGE)),
          ("winograd4", "fused 14x14 from batch 16: features.34 1.59x (direct 1.53x), H100, "
                        "benchmarks/vgg19-bf16-fused-algos-ab-h100.txt",
           dict(pool="max2", channels=512, pixels=14 * 14, batch=LARGE)),
          ("igemm", "fused stages 2.19-3.81x at batch 1, 1.23-2.55x at batch 32, as fp16, H200",
           dict(pool="max2", channels=between(64, 512))),
          ("igemm", "convs of 64-128 channels on maps of 56x56 and up: features.2 / .5 / .7 / .10 1.98x / 1.97x / "
                    "1.79x / 1.64x at batch 1, 1.35x-1.62x at batch 32, H200, benchmarks/rows-ab-h200.txt",
           dict(pool="none", channels=between(64, 128), pixels=at_least(56 * 56))),
          ("igemm", "where a Winograd row above cannot run the call", dict(pool="none", channels=512, pixels=28 * 28)),
          ("igemm", "where a Winograd row above cannot run the call",
           dict(pool="none", channels=512, pixels=14 * 14, batch=SMALL))),
    # fp16 1x1 convs of 64-256 channels at batch 1, with a ReLU (and a residual add): igemm over cuDNN's fused kernel.
    *rows(dict(precision="fp16", channels_last=True, pool="none", kernel="1x1/1", groups=1, batch=1,
               channels=between(64, 256)),
          ("igemm", "ResNet-50 and GoogLeNet at batch 1: 1x1 convs on 64-256 channels 0.49-0.87x of cuDNN's "
                    "fused conv + bias + ReLU (+ residual add) time; from 480 channels 0.64-1.54x (left to "
                    "cuDNN), fp16, H100 and H200, benchmarks/model-{resnet50,googlenet}-b1-fp16-h{100,200}-1207-"
                    "layers.csv; the rules check of 2026-12-07 (b)", {})),
    # Every other 16-bit channels_last conv with a ReLU (cudnn supports nothing else): cuDNN's own fused kernel.
    *rows(dict(precision=("fp16", "bf16"), channels_last=True, batch=at_most(32)),
          ("cudnn", "ResNet-50's 1x1, 3x3 and 3x3/2 convs: 1.3-2.7x at batch 1, 1.3-3.1x at batch 32 over "
                    "F.conv2d + bias + ReLU (+ residual add), fp16 and bf16, H100, "
                    "benchmarks/cudnn-fused-probe-h100.txt", {})),
    # 16-bit channels_last convs without a ReLU, which cuDNN's fused kernel cannot run: MobileNet's
    # ReLU6 and linear convs, ResNet's downsample convs (experiments/rules_check.py found them on cuDNN).
    *rows(dict(precision=("fp16", "bf16"), channels_last=True, pool="none"),
          ("im2col", "MobileNetV2's 3x3/2 stem (ReLU6) at batch 1: 2.7 us against F.conv2d + ReLU6's 8.8 (igemm "
                     "5.1), fp16, H100, " + MOBILENET,
           dict(FIRST_LAYERS, precision="fp16", kernel="3x3/2", batch=SMALL)),
          ("depthwise", "MobileNetV2's 17 depthwise convs (3x3/1 and 3x3/2, ReLU6) at batch 1: 2.33-5.17x over "
                        "F.conv2d + ReLU6, fp16, H100, " + MOBILENET,
           dict(precision="fp16", groups=at_least(2), kernel=("3x3/1", "3x3/2"), batch=SMALL)),
          ("igemm", "1x1 convs: ResNet-50's downsample convs 1.5-3.6x at batch 1 and 32 (fp16 and bf16, H100 and "
                    "H200, benchmarks/model-resnet50-*-1207-layers.csv), MobileNetV2's 33 pointwise convs "
                    "(ReLU6, none, residual add) 1.18-3.84x at batch 1 (fp16, H100, " + MOBILENET + ")",
           dict(kernel=("1x1/1", "1x1/2"), groups=1, batch=at_most(32)))),
)

# GPU class (runtime.gpu_class) -> its rows. Other classes run cuDNN unless a plan measured the call.
RULES = {"hopper": HOPPER}
