"""The split-K choice: measured once per call shape, the fastest wins, nothing is measured during
CUDA-graph capture. Timings are faked here; the kernels' split-K results are checked against the
reference in test_implicit_gemm.py."""
import pytest
import torch

from zeroskip.kernels import split_k


@pytest.fixture
def fake_times(monkeypatch):
    split_k.clear()
    calls = []
    times = {}

    def graph_ms(fn, quantiles=None):
        calls.append(fn)
        return times[fn]

    monkeypatch.setattr(split_k, "graph_ms", graph_ms)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    yield times, calls
    split_k.clear()


def _fn():
    return lambda: None


def test_fastest_option_wins_and_is_remembered(fake_times):
    times, calls = fake_times
    dense, a, b = _fn(), _fn(), _fn()
    times.update({dense: 0.030, a: 0.020, b: 0.015})
    options = [("cfg-a", a), ("cfg-b", b)]
    assert split_k.pick("layer", dense, lambda: options) == "cfg-b"
    assert len(calls) == 3
    assert split_k.pick("layer", dense, lambda: options) == "cfg-b"
    assert len(calls) == 3                                  # no second measurement


def test_dense_kept_when_no_split_is_faster(fake_times):
    times, _ = fake_times
    dense, a = _fn(), _fn()
    times.update({dense: 0.010, a: 0.012})
    assert split_k.pick("layer", dense, lambda: [("cfg", a)]) is None


def test_nothing_measured_without_options_or_during_capture(fake_times, monkeypatch):
    times, calls = fake_times
    dense, a = _fn(), _fn()
    times.update({dense: 0.030, a: 0.010})
    assert split_k.pick("no-options", dense, list) is None and calls == []
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert split_k.pick("captured", dense, lambda: [("cfg", a)]) is None and calls == []
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    assert split_k.pick("captured", dense, lambda: [("cfg", a)]) == "cfg"   # measured later, eagerly


def test_fewer_sms_allow_fewer_splits():
    from zeroskip.geometry import check_conv
    from zeroskip.kernels.direct import Config
    deep = check_conv(torch.empty(1, 512, 14, 14), torch.empty(512, 512, 3, 3), None, 1, 1, 1, 1)
    big = split_k.candidates(deep, torch.float16, Config, sms=132)
    small = split_k.candidates(deep, torch.float16, Config, sms=16)
    assert len(small) < len(big)     # at most 4 waves of programs on the smaller GPU
