"""zeroskip.plan: keys, lookup, JSON files (round trip, environment, validation, permissions).
How dispatch follows a plan is in test_dispatch.py, measuring one in test_measure.py."""
import json
import os
import stat

import pytest
import torch

from zeroskip import plan as zplan


def key(batch=2, dtype=torch.float32, channels_last=False, op="conv2d", activation="relu", **pool):
    x = torch.zeros(batch, 4, 8, 8, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.zeros(6, 4, 3, 3, dtype=dtype)
    return zplan.make_key(op, zplan.spec_of(op, x, w, None, 1, 1, **pool), x, activation)


def test_key_is_stable_and_sensitive(monkeypatch):
    base = key()
    assert key() == base and hash(key()) == hash(base)
    max_pool = dict(op="conv2d_pool", pool="max")
    others = [key(batch=3), key(dtype=torch.float16), key(channels_last=True), key(activation=None),
              key(**max_pool), key(op="conv2d_pool", pool="avg"), key(**max_pool, pool_size=3),
              key(**max_pool, pool_stride=1), key(op="conv2d_pool", pool="avg", pool_padding=1)]
    assert len({base, *others}) == len(others) + 1
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", not torch.backends.cudnn.allow_tf32)
    assert key() != base and key(dtype=torch.float16) == others[1]  # TF32 only matters for fp32
    monkeypatch.undo()
    with pytest.raises(ValueError, match="op"):
        key(op="conv3d")
    with pytest.raises(ValueError, match="pool"):
        key(op="conv2d_pool")


def test_json_round_trip_and_atomic_save(tmp_path):
    plan = zplan.Plan()
    plan.add(key(), "ecr", {"torch": 10.0, "ecr": 7.5, "igemm": "RuntimeError: no"}, sparsity=0.5)
    plan.add(key(dtype=torch.bfloat16, op="conv2d_pool", pool="avg", pool_size=3), "torch", {"torch": 3.0})
    path = tmp_path / "plan.json"
    plan.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary file left behind
    loaded = zplan.Plan.load(path)
    assert loaded.entries == plan.entries and loaded.env == zplan.environment()
    assert loaded.algo(key()) == "ecr" and loaded.get(key(batch=1)) is None
    with pytest.raises(ValueError, match="algo"):
        plan.add(key(), "fast", {})


def test_other_environment_is_ignored_with_warning(tmp_path):
    path = tmp_path / "plan.json"
    other = zplan.Plan({**zplan.environment(), "gpu": "Imaginary GPU 9000"})
    other.add(key(), "ecr", {"ecr": 1.0})
    other.save(path)
    with pytest.warns(RuntimeWarning, match="Imaginary GPU 9000"):
        loaded = zplan.Plan.load(path)
    assert len(loaded) == 0 and loaded.env == zplan.environment()
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format"):
        zplan.Plan.load(path)


def test_algo_for_takes_the_ops_arguments():
    plan = zplan.Plan()
    plan.add(key(batch=1), "igemm", {"igemm": 1.0})
    x, w = torch.zeros(4, 8, 8), torch.zeros(6, 4, 3, 3)  # unbatched: a batch of 1
    assert plan.algo_for("conv2d", x, w, None, 1, 1, activation="relu") == "igemm"
    assert plan.algo_for("conv2d", x, w, None, 1, 1, activation=None) is None
    assert plan.algo_for("conv2d_pool", x, w, None, 1, 1, activation="relu", pool="max") is None


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o664])
def test_save_keeps_the_permissions_of_the_file_it_replaces(tmp_path, mode):
    path = tmp_path / "plan.json"
    path.write_text("{}")
    os.chmod(path, mode)
    zplan.Plan().save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode and json.loads(path.read_text())["format"] == zplan.FORMAT


def test_save_gives_a_new_file_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        zplan.Plan().save(tmp_path / "plan.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "plan.json").st_mode) == 0o640


def _saved(tmp_path, edit):
    """A valid one-entry plan file, changed by edit(data), and its path."""
    plan = zplan.Plan()
    plan.add(key(op="conv2d_pool", pool="max"), "igemm", {"torch": 2.0, "igemm": 1.0}, sparsity=0.5)
    data = plan.to_json()
    edit(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return path


def _drop(d, name):
    del d[name]


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(entries={}), r"plan.json: 'entries' must be a list"),
    (lambda d: d.pop("environment"), r"plan.json: 'environment' must be an object"),
    (lambda d: d["entries"].append(3), r"entries\[1\]: must be an object"),
    (lambda d: _drop(d["entries"][0], "algo"), r"entries\[0\]: missing 'algo'"),
    (lambda d: _drop(d["entries"][0]["key"], "tf32"), r"entries\[0\].key: missing 'tf32'"),
    (lambda d: d["entries"][0].update(algo="fast"), r"entries\[0\].algo: must be one of .*'fast'"),
    (lambda d: d["entries"][0]["key"].update(op="conv3d"), r"entries\[0\].key.op: .*'conv3d'"),
    (lambda d: d["entries"][0]["key"].update(activation="gelu"), r"entries\[0\].key.activation: .*'gelu'"),
    (lambda d: d["entries"][0]["key"].update(dtype="int8"), r"entries\[0\].key.dtype: .*'int8'"),
    (lambda d: d["entries"][0]["key"].update(tf32="yes"), r"entries\[0\].key.tf32: must be true or false"),
    (lambda d: d["entries"][0]["key"]["spec"].update(batch="2"), r"entries\[0\].key.spec.batch: must be an int"),
    (lambda d: d["entries"][0]["key"]["spec"].update(stride_h=0), r"key.spec.stride_h: must be an int >= 1, got 0"),
    (lambda d: d["entries"][0]["key"]["spec"].update(pool="min"), r"key.spec.pool: must be one of"),
    (lambda d: d["entries"][0]["key"]["spec"].update(warp=2), r"key.spec: unknown fields \['warp'\]"),
    (lambda d: _drop(d["entries"][0]["key"]["spec"], "out_h"), r"key.spec: missing fields \['out_h'\]"),
    (lambda d: d["entries"][0]["key"]["spec"].update(groups=3), r"key.spec: channels 4 -> 6 not divisible by groups=3"),
    (lambda d: d["entries"][0]["key"].update(op="conv2d"), r"entries\[0\].key: op='conv2d' with pool='max'"),
    (lambda d: d["entries"][0].update(times_us=[1.0]), r"entries\[0\].times_us: must map"),
    (lambda d: d["entries"][0].update(sparsity="half"), r"entries\[0\].sparsity: must be a number"),
])
def test_malformed_plans_name_what_is_wrong(tmp_path, edit, match):
    path = _saved(tmp_path, edit)
    with pytest.raises(ValueError, match=match) as info:
        zplan.Plan.load(path)
    assert str(path) in str(info.value)


def test_a_valid_file_loads_and_not_json_is_named(tmp_path):
    path = _saved(tmp_path, lambda d: None)
    assert zplan.Plan.load(path).algo(key(op="conv2d_pool", pool="max")) == "igemm"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="plan.json: not JSON"):
        zplan.Plan.load(path)
