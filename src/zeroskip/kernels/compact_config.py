"""Tile configurations of the "compact" convolution (kernels/compact.py): the defaults, their
checks, and the shared memory a configuration needs, so that none is launched that cannot fit."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import triton

from . import compact_pack

MAX_GROUP = 1024  # channels per group: one group per tile up to here (ids per tile, pass-1 blocks)


@dataclass(frozen=True)
class Config:
    """Main kernel: TH x TW output pixels per tile (powers of 2; the MMA's M is their product),
    BLOCK_N output channels, CHUNK live channels per packed chunk (P's unit, rounding the work),
    KPACK live channels per packed dot (runs of KPACK // CHUNK whole chunks; the rest a chunk per
    dot), DK channels per dense-group dot, GROUP channels per group, SPLIT programs per tile, warps
    and pipeline stages. Pass 1: PACK_SPLIT programs per (tile, group), PACK_WARPS warps (0: by the
    group and tile, compact_pack.warps)."""
    th: int = 8
    tw: int = 16
    block_n: int = 128
    chunk: int = 16
    kpack: int = 32
    dk: int = 64
    group: int = 128
    split: int = 1
    num_warps: int = 8
    num_stages: int = 3
    pack_split: int = 1
    pack_warps: int = 0


def default_config(spec, dtype, interpreting: bool = False, sms: int = 132) -> Config:
    """Tiles before measurement. 8x16 pixels (128 MMA rows: twice the reuse of each gathered
    weight row of 8x8 tiles) x 128 output channels on 4 warps (sm_90 PTX of the packed loops: 113
    to 126 instructions per thread per dot on 4 warps, 100 to 107 on 8, so per MMA 4 warps issue
    40% fewer), where that fills the SMs; else 8x8 tiles (more programs, and less work left: HED
    conv3_1 0.25 against 0.27 at batch 1). 16-channel chunks in dots of 32 (64 from 256 channels,
    whose tiles hold more live ones), one channel group per tile (conv5_2 at batch 32: work left
    0.43 at 8x8 with one group, 0.48 with groups of 128)."""
    group = min(MAX_GROUP, max(16, triton.next_power_of_2(spec.in_channels)))
    block_n = min(64 if interpreting else 128, max(16, triton.next_power_of_2(spec.out_channels)))
    if interpreting:  # ~9 ms per program-iteration: big steps, one warp
        group = min(group, 64)
        return Config(8, 8, block_n, 16, min(32, group), group, group, 1, 1, 1, 1, 1)
    nb = triton.cdiv(spec.out_channels, block_n)
    ty, tx = compact_pack.tiles(spec, 8, 16)
    th, tw = (8, 16) if spec.batch * ty * tx * nb >= sms else (8, 8)
    ty, tx = compact_pack.tiles(spec, th, tw)
    tiles = spec.batch * ty * tx
    # split tiles (and pass 1's chunks) only where programs leave at least half the SMs idle (a
    # first guess: the sweep of scripts/bench_compact.py times other configs)
    split = min(8, sms // (tiles * nb)) if 2 * tiles * nb <= sms else 1
    pack_split = min(4, sms // tiles) if 2 * tiles <= sms else 1
    kpack = min(group, 64 if spec.in_channels >= 256 else 32)
    dk = min(group, 32 if dtype == torch.float32 else 64)
    # fp32 (3xTF32) keeps a second fp32 tile for its small products: twice the warps
    warps = min_warps(th, tw, block_n) * (2 if dtype == torch.float32 else 1)
    return Config(th, tw, block_n, 16, kpack, dk, group, split, max(4, warps), 3, pack_split)


def min_warps(th: int, tw: int, block_n: int) -> int:
    """The fewest warps that hold a TH*TW x BLOCK_N fp32 accumulator in 128 registers per thread
    (more spills: 8x16 x 128 on 4 warps took 202 registers, sm_90)."""
    return max(1, th * tw * block_n // 4096)


def check(cfg: Config) -> None:
    """Raises ValueError naming the first field of cfg that the kernels cannot take."""
    for name in ("th", "tw", "block_n", "chunk", "kpack", "dk", "group"):
        v = getattr(cfg, name)
        if v < 1 or v & (v - 1):
            raise ValueError(f"config.{name} must be a power of 2, got {v}")
    if cfg.th * cfg.tw < 16 or min(cfg.th, cfg.tw) < 2:
        raise ValueError(f"config tile {cfg.th}x{cfg.tw} must be at least 2 wide and hold 16 pixels")
    if min(cfg.chunk, cfg.dk, cfg.block_n) < 16:
        raise ValueError(f"config chunk, dk and block_n must be >= 16 (tl.dot), got {cfg}")
    if cfg.group < max(cfg.kpack, cfg.dk) or cfg.kpack < cfg.chunk:
        raise ValueError(f"config.group {cfg.group} must be a multiple of kpack {cfg.kpack} and dk {cfg.dk}, "
                         f"kpack a multiple of chunk {cfg.chunk}")
    for name in ("split", "pack_split", "num_warps", "num_stages"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"config.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.pack_warps < 0:
        raise ValueError(f"config.pack_warps must be >= 0 (0: by group and tile), got {cfg.pack_warps}")


MAX_STAGES = 8


def stages(cfg: Config, k: int) -> int:
    """Pipeline stages of the loop whose dots take k channels: num_stages for the dense loop's dk,
    scaled by dk / k for the narrower packed dots (as many bytes in flight: a 16-channel dot is a
    quarter of a 64-channel one's tensor-core time, so it hides a quarter of the load latency),
    at most MAX_STAGES."""
    return min(MAX_STAGES, max(cfg.num_stages, cfg.num_stages * cfg.dk // k))


def shared_bytes(cfg: Config, dtype, precision: str) -> int:
    """Shared memory of the main kernel, an upper bound of what Triton allocates: its largest
    pipelined loop, stages() copies of that loop's A and B tiles (B twice for 3xtf32's low half;
    ids of a packed dot), or an fp32 exchange of up to 64 KiB of the tile in the epilogue, whichever
    is larger (sm_90 builds: within 1.5 KiB of the loop's figure wherever that is larger;
    tests/sm90_compile.py checks the bound on every config it builds)."""
    e = torch.empty((), dtype=dtype).element_size()
    m, n = cfg.th * cfg.tw, cfg.block_n
    halves = 2 if precision == "3xtf32" else 1
    loops = max(stages(cfg, k) * (m * k * e + k * n * e * halves + 4 * k) for k in (cfg.dk, cfg.kpack, cfg.chunk))
    return max(loops, min(m * n * 4, 65536))


def fit(cfg: Config, dtype, precision: str, limit: int | None) -> Config:
    """cfg checked, and fitted into `limit` bytes of shared memory (None: no limit): fewer
    pipeline stages (down to 2, the fewest that still pipeline), then narrower packed dots (kpack
    down to chunk), then narrower dense steps (dk down to 16). ValueError when even that does not
    fit."""
    check(cfg)
    if limit is None:
        return cfg
    fitted = cfg
    while shared_bytes(fitted, dtype, precision) > limit:
        if fitted.num_stages > 2:
            fitted = dataclasses.replace(fitted, num_stages=fitted.num_stages - 1)
        elif fitted.kpack > fitted.chunk:
            fitted = dataclasses.replace(fitted, kpack=fitted.kpack // 2)
        elif fitted.dk > 16:
            fitted = dataclasses.replace(fitted, dk=fitted.dk // 2)
        else:
            raise ValueError(f"config {cfg} needs {shared_bytes(fitted, dtype, precision)} bytes of shared memory "
                             f"even at 2 stages, kpack {fitted.kpack} and dk {fitted.dk} ({dtype}, {precision}); "
                             f"the device allows {limit}: use a smaller block_n or tile")
    return fitted
