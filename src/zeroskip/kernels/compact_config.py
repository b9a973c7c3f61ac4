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
    and pipeline stages. Pass 1: PACK_SPLIT programs per (tile, group), PACK_WARPS warps."""
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
    pack_warps: int = 4


def default_config(spec, dtype, interpreting: bool = False, sms: int = 132) -> Config:
    """Tiles before measurement: 8x16 pixels (128 MMA rows: twice the reuse of each gathered
    weight row of 8x8 tiles) x 128 output channels on 8 warps, 16-channel chunks in dots of 32,
    one channel group per tile (HED VGG-16 conv5_2 at batch 32: work left 0.43 at 8x8, 0.48 at
    8x16 with one group; at 8x8 0.48 with groups of 128)."""
    group = min(MAX_GROUP, max(16, triton.next_power_of_2(spec.in_channels)))
    block_n = min(64 if interpreting else 128, max(16, triton.next_power_of_2(spec.out_channels)))
    if interpreting:  # ~9 ms per program-iteration: big steps, one warp
        group = min(group, 64)
        return Config(8, 8, block_n, 16, min(32, group), group, group, 1, 1, 1, 1, 1)
    th, tw = 8, 16
    ty, tx = compact_pack.tiles(spec, th, tw)
    tiles = spec.batch * ty * tx
    programs = tiles * triton.cdiv(spec.out_channels, block_n)
    # split tiles (and pass 1's chunks) only where programs leave at least half the SMs idle (a
    # first guess: the sweep of scripts/bench_compact.py times other splits)
    split = min(8, sms // programs) if 2 * programs <= sms else 1
    pack_split = min(4, sms // tiles) if 2 * tiles <= sms else 1
    dk = 32 if dtype == torch.float32 else 64
    return Config(th, tw, block_n, 16, 32, min(dk, group), group, split, 8, 3, pack_split, compact_pack.warps(group))


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
    for name in ("split", "pack_split", "num_warps", "num_stages", "pack_warps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"config.{name} must be >= 1, got {getattr(cfg, name)}")


def shared_bytes(cfg: Config, dtype, precision: str) -> int:
    """Shared memory of the main kernel, an upper bound of what Triton allocates: its largest
    pipelined loop, num_stages copies of that loop's A and B tiles (B twice for 3xtf32's low half;
    ids of a packed dot), or an fp32 exchange of up to 64 KiB of the tile in the epilogue, whichever
    is larger (sm_90 builds: within 1.5 KiB of the loop's figure wherever that is larger;
    tests/sm90_compile.py checks the bound on every config it builds)."""
    e = torch.empty((), dtype=dtype).element_size()
    m, n = cfg.th * cfg.tw, cfg.block_n
    halves = 2 if precision == "3xtf32" else 1
    per_stage = max(m * k * e + k * n * e * halves + 4 * k for k in (cfg.dk, cfg.kpack, cfg.chunk))
    return max(cfg.num_stages * per_stage, min(m * n * 4, 65536))


def fit(cfg: Config, dtype, precision: str, limit: int | None) -> Config:
    """cfg checked, with num_stages lowered (down to 2, the fewest that still pipelines) until its
    shared memory fits `limit` bytes (None: no limit); ValueError when even that does not fit."""
    check(cfg)
    if limit is None:
        return cfg
    stages = cfg.num_stages
    while stages > 2 and shared_bytes(dataclasses.replace(cfg, num_stages=stages), dtype, precision) > limit:
        stages -= 1
    need = shared_bytes(dataclasses.replace(cfg, num_stages=stages), dtype, precision)
    if need > limit:
        raise ValueError(f"config {cfg} needs {need} bytes of shared memory at {stages} stages ({dtype}, "
                         f"{precision}); the device allows {limit}: use a smaller block_n, dk, kpack or tile")
    return dataclasses.replace(cfg, num_stages=stages)
