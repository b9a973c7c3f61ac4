"""What block skipping could save at most: for each conv of a suite and each input zero fraction,
the fraction of a tensor-core kernel's (pixel tile, channel chunk) blocks that hold a non-zero
anywhere in the tile's receptive field. A kernel that skips all-zero blocks must still compute
those; 1 / fraction bounds its speedup over the same kernel dense, before any bookkeeping.

Zeros are placed as `zeroskip sweep --structure real` places them (bench/sparsity.py: the
authors' VGG-19 maps, shifted and flipped per channel); --structure random places them
independently. Tiles are BLOCK_M consecutive output pixels (n, y, x), as in the direct kernel.
CPU only; no timing.

PYTHONPATH=src python3 experiments/skip_bound.py DATA [--suite vgg19,googlenet] [--batch 2]
    [--sparsities 0.8,0.9,0.95,0.99] [--blocks 64x1,64x16,64x32,64x64,128x32] [--structure real]
"""
import argparse

import torch
import torch.nn.functional as F

from zeroskip.bench.sparsity import sweep_input
from zeroskip.bench.suites import load_suite


def kept_fraction(x: torch.Tensor, layer, block_m: int, block_k: int) -> float:
    """Fraction of (tile of block_m output pixels, chunk of block_k input channels) blocks with a
    non-zero input in the tile's receptive field."""
    nz = (x != 0).float()
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel, layer.stride, layer.padding, layer.dilation
    # any non-zero in each output pixel's window, per input channel: a max-pool of the mask
    field = F.max_pool2d(F.pad(nz, (pw, pw, ph, ph)), (kh, kw), (sh, sw), dilation=(dh, dw)) > 0
    c = field.shape[1]
    rows = field.permute(1, 0, 2, 3).reshape(c, -1).to(torch.uint8)  # (C, pixels in n, y, x order)
    pad_m = -rows.shape[1] % block_m
    pad_k = -c % block_k
    rows = F.pad(rows, (0, pad_m, 0, pad_k))
    tiles = rows.reshape(c + pad_k, -1, block_m).any(-1)  # (C, tiles)
    blocks = tiles.reshape(-1, block_k, tiles.shape[1]).any(1)  # (chunks, tiles)
    # padded channels belong to the last chunk only; padded pixels to the last tile only
    return float(blocks.float().mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--suite", default="vgg19,googlenet")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--sparsities", default="0.8,0.9,0.95,0.99")
    ap.add_argument("--blocks", default="64x1,64x16,64x32,64x64,128x32", help="BLOCK_M x BLOCK_K pairs")
    ap.add_argument("--structure", default="real", choices=("real", "random"))
    args = ap.parse_args()
    sparsities = [float(s) for s in args.sparsities.split(",")]
    blocks = [tuple(int(v) for v in b.split("x")) for b in args.blocks.split(",")]
    torch.manual_seed(0)
    print(f"# kept fraction of (BLOCK_M pixels x BLOCK_K channels) blocks, zeros {args.structure}, batch {args.batch}; "
          f"per block size: one value per zero fraction {'/'.join(map(str, sparsities))}")
    print(f"{'suite':9s} {'layer':26s} {'shape':28s} " + " ".join(f"{f'{m}x{k}':>23s}" for m, k in blocks))
    for suite in args.suite.split(","):
        for layer in load_suite(suite):
            if layer.image_input:
                continue  # a dense image: nothing to skip
            shape = (args.batch, layer.in_channels, layer.height, layer.width)
            kept = {b: [] for b in blocks}
            for s in sparsities:
                x = sweep_input(shape, s, args.structure, args.data)
                for m, k in blocks:
                    kept[(m, k)].append(kept_fraction(x, layer, m, k))
            geo = f"{layer.in_channels}->{layer.out_channels} {layer.kernel[0]}x{layer.kernel[1]} {layer.height}x{layer.width}"
            print(f"{suite:9s} {layer.name:26s} {geo:28s} "
                  + " ".join(f"{'/'.join(f'{v:.2f}' for v in kept[b]):>23s}" for b in blocks), flush=True)


if __name__ == "__main__":
    main()
