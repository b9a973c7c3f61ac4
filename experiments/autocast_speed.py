"""torch.autocast against explicit half inputs, on converted models (GPU).

For each model and batch: the model in fp16 (channels_last) converted and fed fp16 input, against the
same model in fp32 converted and run under torch.autocast(fp16) on fp32 input; eager cuDNN both ways
beside them. Both conversions skip per-layer measuring and the output check (the rule table
picks every call), so the two sides run the same kernels and differ only by autocast's casts. GPU time by
CUDA-graph replay (zeroskip.bench.timing).

    PYTHONPATH=src python3 experiments/autocast_speed.py [--models vgg19,resnet50] [--batch 1,32]
"""
import argparse
import copy
import json

import torch

import zeroskip
from zeroskip.bench import timing
from zeroskip.bench.models import build_model, model_input


def row(name, batch):
    model = build_model(name).cuda().eval().to(memory_format=torch.channels_last)
    x = model_input(name, batch)[0].cuda().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x.double())
        half, full = copy.deepcopy(model).half(), model
        zeroskip.convert_(half, measure=False)  # no example inputs: no fp32 kernels compiled for a check
        zeroskip.convert_(full, measure=False)
        xh = x.half()

        def autocast(m):
            with torch.autocast("cuda", dtype=torch.float16):
                return m(x)
        out = autocast(full)
        err = float((out.double() - ref).norm() / ref.norm())
        eager = build_model(name).cuda().eval().to(memory_format=torch.channels_last)
        eager_half = copy.deepcopy(eager).half()
        t = timing.measure_same(lambda: half(xh), lambda: autocast(full), lambda: eager_half(xh),
                                lambda: autocast(eager), inner=10, reps=20)
    us = [round(v.us, 1) for v in t]
    return {"model": name, "batch": batch, "converted_fp16_us": us[0], "converted_autocast_us": us[1],
            "autocast_over_fp16": round(us[1] / us[0], 3), "eager_fp16_us": us[2], "eager_autocast_us": us[3],
            "autocast_out_dtype": str(out.dtype), "autocast_rel_err": err, "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vgg19,resnet50")
    p.add_argument("--batch", default="1,32")
    p.add_argument("--out", default=None, help="JSON file for the rows")
    a = p.parse_args()
    rows = []
    for name in a.models.split(","):
        for b in a.batch.split(","):
            rows.append(row(name, int(b)))
            print(json.dumps(rows[-1]), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
