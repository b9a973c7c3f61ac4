"""The wgmma layouts Triton gives kernels/rows.py's accumulators per tile config, and how many
convert_layout ops it leaves inside the reduction loop, from the sm_90 TTGIR (no GPU needed).

TRITON_INTERPRET= python scripts/rows_layouts.py [--configs 4x64x64x32x4x2,4x64x64x32x8x2]
(R x SEG x BLOCK_N x BLOCK_K x warps x stages; default: rows.TILES and their 8-warp twins)
"""
import argparse
import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(root / "tests"), str(root / "src")]
import sm90_compile as c  # noqa: E402
from zeroskip.kernels import rows  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--configs")
args = ap.parse_args()
configs = ([tuple(int(v) for v in s.split("x")) for s in args.configs.split(",")] if args.configs
           else [t for tile in rows.TILES for t in (tile, tile[:4] + (8,) + tile[5:])])
C, H, CO = 128, 112, 128  # VGG-19 features.7, bf16, 2x2/2 pool
sizes = dict(C=C, H=H, W=H, COUT=CO, OH=H, OW=H, PH=H // 2, PW=H // 2, sxn=H * H * C, sxc=1, sxh=H * C, sxw=C, swc=CO,
             swh=3 * C * CO, sww=C * CO, syn=H * H * CO // 4, syc=1, syh=H * CO // 2, syw=CO, sb=1, pad_h=1, pad_w=1,
             HAS_BIAS=True, ACTIVATION=1, POOL=True, UPCAST=False)
for r, seg, bn, bk, warps, stages in configs:
    kernel = c.compile_variant(rows._rows_kernel, "bf16", dict(sizes, R=r, SEG=seg, BLOCK_N=bn, BLOCK_K=bk), warps, stages)
    ttgir = kernel.asm["ttgir"]
    converts, depth, inside = 0, 0, False
    for line in ttgir.splitlines():
        if "scf.for" in line:
            inside, depth = True, 0
        if inside:
            depth += line.count("{") - line.count("}")
            converts += "ttg.convert_layout" in line
            if depth <= 0 and "}" in line:
                inside = False
    layouts = sorted(set(re.findall(r"warpsPerCTA = \[\d+, \d+\], instrShape = \[\d+, \d+, \d+\]", ttgir)))
    print(f"{r}x{seg}x{bn}x{bk} warps={warps} stages={stages}: {converts} convert_layout in the loop; wgmma {layouts}")
