"""The benchmark harness on the CPU: suites, realistic inputs, rows, tables, break-even, CLI errors
(runs, layouts and their output: test_bench_run.py). No kernel is called here (the kernels and the
demo are tested elsewhere) and no GPU is needed."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import fake_row
from zeroskip import cli
from zeroskip.bench import replicate, run, sparsity
from zeroskip.bench.suites import SUITES, load_suite

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("name,count", [("vgg19", 16), ("alexnet", 5), ("lenet5", 2), ("googlenet", 57)])
def test_suite_counts(name, count):
    layers = load_suite(name)
    assert len(layers) == count
    assert len({layer.name for layer in layers}) == count
    assert layers[0].image_input and not any(layer.image_input for layer in layers[1:])


@pytest.mark.parametrize("name", ["vgg19", "alexnet", "lenet5"])
def test_sequential_suites_chain(name):
    """Each conv reads what the previous conv (and its pool, if any) wrote."""
    layers = load_suite(name)
    for prev, layer in zip(layers, layers[1:]):
        assert layer.in_channels == prev.out_channels
        assert (layer.height, layer.width) == (prev.pooled_hw or prev.out_hw)


def test_googlenet_shapes_from_torchvision_config():
    """Recomputes every GoogLeNet conv from torchvision's Inception table and ceil-mode pools."""
    def ceil_pool(n, k, s):
        o = -(-(n - k) // s) + 1
        return o - 1 if (o - 1) * s >= n else o

    blocks = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "pool3",
              (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64),
              (512, 112, 144, 288, 32, 64, 64), (528, 256, 160, 320, 32, 128, 128), "pool2",
              (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]
    hw = ceil_pool(112, 3, 2)
    expect = [(3, 64, 224, 7, 2, 3), (64, 64, hw, 1, 1, 0), (64, 192, hw, 3, 1, 1)]
    hw = ceil_pool(hw, 3, 2)
    cin = 192
    for b in blocks:
        if isinstance(b, str):
            hw = ceil_pool(hw, 3 if b == "pool3" else 2, 2)
            continue
        assert b[0] == cin
        c, c1, c3r, c3, c5r, c5, pp = b
        expect += [(c, c1, hw, 1, 1, 0), (c, c3r, hw, 1, 1, 0), (c3r, c3, hw, 3, 1, 1),
                   (c, c5r, hw, 1, 1, 0), (c5r, c5, hw, 3, 1, 1), (c, pp, hw, 1, 1, 0)]
        cin = c1 + c3 + c5 + pp
    assert cin == 1024 and hw == 7
    got = [(v.in_channels, v.out_channels, v.height, v.kernel[0], v.stride[0], v.padding[0])
           for v in load_suite("googlenet")]
    assert got == expect
    layers = load_suite("googlenet")
    assert layers[0].pooled_hw == (56, 56) and layers[0].pool_after["ceil_mode"]


def test_vgg_feature_mapping(data):
    layers = load_suite("vgg19")
    order = (data / "vgg19" / "all_conv_name.txt").read_text().split()
    assert [v.paper_feature for v in layers] == order
    for v in layers[1:]:
        assert (data / "vgg19" / "feature" / v.real_feature).exists()
        assert f"__{v.height}_{v.width}." in v.real_feature
    assert layers[0].real_feature is None


@pytest.mark.parametrize("name", ["features.5", "features.19", "features.30"])
def test_realistic_input_hits_target(data, name):
    layer = next(v for v in load_suite("vgg19") if v.name == name)
    target = sparsity.zero_fraction(sparsity.real_map(layer.real_feature))
    a = sparsity.realistic_input(layer, 2)
    b = sparsity.realistic_input(layer, 2)
    assert a.shape == (2, layer.in_channels, layer.height, layer.width)
    assert abs(sparsity.zero_fraction(a) - target) < 0.015
    assert abs(sparsity.zero_fraction(b) - target) < 0.015
    assert not torch.equal(a, b) and not torch.equal(a == 0, b == 0)
    per_channel = (a == 0).float().mean(dim=(2, 3))
    assert per_channel.std() > 0  # channel densities vary
    assert (a >= 0).all()


def test_realistic_input_other_suites(data):
    for layer in (load_suite("alexnet")[2], load_suite("lenet5")[1], load_suite("googlenet")[20]):
        _, target = sparsity.proxy(layer)
        assert 0.0 < target < 1.0
        x = sparsity.realistic_input(layer, 1)
        assert abs(sparsity.zero_fraction(x) - target) < 0.015
    # an image is dense noise, no zeros placed; torch.randn itself rounds to exactly 0.0 now and
    # then (one of AlexNet's 150528 inputs in a CI run), so not "== 0"
    image = sparsity.realistic_input(load_suite("alexnet")[0], 1)
    assert sparsity.zero_fraction(image) < 1e-4


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
def test_sweep_input_exact_random(s):
    x = sparsity.sweep_input((2, 3, 13, 17), s, "random")
    assert int((x == 0).sum()) == round(s * x.numel())


@pytest.mark.parametrize("s", [0.0, 0.37, 0.99])
def test_sweep_input_exact_real(data, s):
    x = sparsity.sweep_input((1, 5, 28, 28), s, "real")
    assert int((x == 0).sum()) == round(s * x.numel())


def test_sweep_input_bad_args():
    with pytest.raises(ValueError, match="structure"):
        sparsity.sweep_input((1, 1, 4, 4), 0.5, "blobs")
    with pytest.raises(ValueError, match="sparsity"):
        sparsity.sweep_input((1, 1, 4, 4), 1.5, "random")


def test_channel_fractions_mean():
    f = sparsity.channel_fractions(0.9, 1000, 0.05)
    assert abs(float(f.mean()) - 0.9) < 1e-6 and f.min() >= 0 and f.max() <= 1 and f.std() > 0


def test_loaders(tmp_path):
    m = tmp_path / "feature_1__2_3.txt"
    m.write_text("1 0 2 0 0 3.5\n")
    assert sparsity.load_feature_map(m).tolist() == [[1, 0, 2], [0, 0, 3.5]]
    k = tmp_path / "kernel.txt"
    k.write_text("1 2\n3 4\n")
    assert sparsity.load_feature_map(k).shape == (2, 2)
    t = torch.rand(3, 4, 5)
    torch.save(t, tmp_path / "x.pt")
    assert torch.equal(sparsity.load_user_input(tmp_path / "x.pt"), t[None])


def test_missing_data_path_is_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        sparsity.paper_data_path(tmp_path / "nope")
    monkeypatch.setenv(sparsity.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match="env"):
        sparsity.paper_data_path()


def test_make_row_fields():
    r = fake_row(op="conv2d_pool")
    assert set(run.FIELDS) <= set(r)
    assert r["speedup"] == 2.0 and r["speedup_compiled"] is None and r["ok"]
    assert set(r["shape"]) == {"n", "c", "h", "w", "cout", "kh", "kw", "stride", "padding", "dilation", "groups",
                               "pool"}
    assert r["shape"]["pool"] == {"pool": "max", "size": 2, "stride": 2, "padding": 0}
    assert fake_row()["shape"]["pool"] is None
    assert math.isclose(r["tflops"], load_suite("vgg19")[1].flops(4) / 50e-6 / 1e12)
    assert not fake_row(err=1e-3)["ok"] and fake_row(err=1e-3, dtype="tf32")["ok"]
    missing = fake_row(ours=None, base=None, err=None)
    assert missing["speedup"] is None and missing["tflops"] is None and not missing["ok"]


def test_write_and_print(tmp_path, capsys):
    rows = [fake_row(), fake_row(ours=200.0, layer=load_suite("vgg19")[2])]
    path = run.write_results(rows, tmp_path / "r.json")
    assert json.loads(path.read_text())[0]["speedup"] == 2.0
    assert path.with_suffix(".csv").read_text().splitlines()[0].startswith("suite,layer,op")
    run.print_table(rows)
    out = capsys.readouterr().out
    assert "features.2" in out and "1.00x over 2 layers" in out  # geomean of 2.0 and 0.5


def test_break_even():
    assert math.isclose(run.break_even([0, 0.2, 0.4, 0.6], [0.5, 0.8, 1.2, 2.0]), 0.3)
    assert run.break_even([0.1, 0.5], [1.5, 3.0]) == 0.1
    assert run.break_even([0.1, 0.5, 0.9], [0.2, 0.5, 0.9]) is None
    assert math.isclose(run.break_even([0, 0.2, 0.4, 0.6], [0.5, 1.5, 0.5, 1.5]), 0.5)  # last crossing
    rows = [fake_row(ours=100 / v, s=s) for s, v in [(0.0, 0.5), (0.5, 1.0), (0.9, 2.0)]]
    assert list(run.break_evens(rows).values()) == [0.5]


def test_break_even_of_auto_on_cudnn_is_no_number():
    """auto on cuDNN at every point: both sides are one kernel, so noise above 1.0 is no break-even;
    one point on a kernel makes it a real line again."""
    rows = [fake_row(ours=100 / v, s=s) for s, v in [(0.0, 0.99), (0.5, 1.01), (0.9, 1.0)]]
    for r in rows:
        r["notes"] = ["auto ran torch"]
    assert list(run.break_evens(rows).values()) == [run.SAME_KERNEL]
    rows[2]["notes"] = ["auto ran igemm"]
    assert math.isclose(list(run.break_evens(rows).values())[0], 0.25)  # 0.99 at 0.0 -> 1.01 at 0.5


def test_replicate_cases(data):
    cases = replicate.cases()
    assert [c["kind"] for c in cases] == ["conv"] * 16 + ["pool"] * 5 + ["sweep"] * 9
    pools = [c for c in cases if c["kind"] == "pool"]
    assert [c["kernel"].split("/")[-1] for c in pools] == [f"features.{k}.weight.txt" for k in (2, 7, 16, 25, 34)]
    assert all((data / c["feature"]).exists() and (data / c["kernel"]).exists() for c in cases)


@pytest.mark.parametrize("argv,arg", [(["bench", "--suite", "resnet"], "--suite"),
                                      (["bench", "--dtype", "fp64"], "--dtype"),
                                      (["bench", "--batch", "0"], "--batch"),
                                      (["bench", "--ops", "conv3d"], "--ops"),
                                      (["bench", "--algo", "fast"], "--algo"),
                                      (["sweep", "--sparsities", "0.5,2"], "--sparsities"),
                                      (["sweep", "--layout", "both"], "--layout"),
                                      (["bench", "--model", "vgg19", "--layout", "both"], "--layout"),
                                      (["replicate", "--dtype", "bf16"], "--dtype")])
def test_cli_bad_arguments(argv, arg, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert f"argument {arg}" in capsys.readouterr().err


def test_missing_gpu_first_then_missing_data(monkeypatch, capsys):
    """On a CPU the GPU is what is missing (one line, exit 2); with a GPU, the paper folder, named once."""
    gpu = torch.cuda.is_available()
    for argv in (["bench", "--data", "/no/such/folder"], ["sweep", "--input", "paper", "--data", "/no/such/folder"],
                 ["replicate", "--data", "/no/such/folder"]):
        if not gpu:
            assert cli.main(argv) == 2
            err = capsys.readouterr().err
            assert "timings need a CUDA GPU" in err and "paper data" not in err and len(err.splitlines()) == 1
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("/no/such/folder") == 1
        assert f"zeroskip {argv[0]}: error: argument --data: paper data not found" in err
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)


def test_default_paper_path_is_named_once(tmp_path, monkeypatch):
    """Run from the repo root, the two default guesses are one folder: the message names it once."""
    monkeypatch.delenv(sparsity.ENV_VAR, raising=False)
    root = Path(sparsity.__file__).resolve().parents[3]
    monkeypatch.chdir(root)
    monkeypatch.setattr(Path, "is_dir", lambda self: False)
    with pytest.raises(FileNotFoundError) as exc:
        sparsity.paper_data_path()
    assert str(exc.value).count("paper-data") == 1


def test_cli_bad_layer(data, capsys):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--layers", "features.99"])
    assert "argument --layers" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_needs_gpu(data, capsys):
    assert cli.main(["bench", "--suite", "lenet5"]) == 2
    assert "need a CUDA GPU" in capsys.readouterr().err


def test_module_help():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-m", "zeroskip", "--help"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0 and "bench" in out.stdout and "replicate" in out.stdout


def test_suites_listed():
    assert set(SUITES) == {"vgg16", "vgg19", "alexnet", "googlenet", "lenet5"}
