"""kernels/weight_cache.py: a packed or Winograd-transformed weight is reused only while the weight is
unchanged; every way of changing a weight that metadata can show gives the new weight's result."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import zeroskip
from helpers import TOL, reference, rel_err, sparse

# "ecr" reads the packed weight (output channels contiguous), "winograd" the transformed one
ALGOS = ["ecr", "winograd"]


@torch.no_grad()
def check(x, w, algo):
    out = zeroskip.conv2d(x, w, None, padding=1, algo=algo)
    assert rel_err(out, reference(x, w, None, padding=1)) <= TOL[torch.float32]


def cache():
    from zeroskip.kernels import weight_cache
    return weight_cache


@pytest.fixture
def x(device):
    return sparse((1, 4, 6, 6), 0.7, device=device)


@pytest.mark.parametrize("algo", ALGOS)
def test_data_assigned_a_transposed_view(x, algo, device):
    """Same storage, same version, new strides."""
    w = nn.Parameter(torch.randn(6, 4, 3, 3, device=device))
    check(x, w, algo)
    w.data = w.data.transpose(2, 3)
    check(x, w, algo)


@pytest.mark.parametrize("algo", ALGOS)
def test_in_place_edits(x, algo, device):
    w = nn.Parameter(torch.randn(6, 4, 3, 3, device=device))
    check(x, w, algo)
    with torch.no_grad():
        w.mul_(-2)
    check(x, w, algo)
    with torch.no_grad():
        w[:, 1].zero_()  # through a view: views share the version counter
    check(x, w, algo)
    alias = w.data          # an alias that does not share the version counter, kept alive
    alias.add_(1)
    check(x, w, algo)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("count", [1, 2])
def test_vector_to_parameters_into_a_reused_vector(x, algo, count, device):
    """The parameters become views of the vector; editing the vector and loading it again changes
    no metadata of theirs."""
    params = [nn.Parameter(torch.randn(6, 4, 3, 3, device=device)) for _ in range(count)]
    vec = parameters_to_vector(params)
    vector_to_parameters(vec, params)
    check(x, params[-1], algo)
    with torch.no_grad():
        vec.mul_(-3)
    vector_to_parameters(vec, params)
    check(x, params[-1], algo)
    vec.copy_(torch.randn_like(vec))  # without loading again: the parameters see it too
    check(x, params[-1], algo)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("assign", [False, True])
def test_load_state_dict(x, algo, assign, device):
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False).to(device)
    check(x, conv.weight, algo)
    conv.load_state_dict({"weight": torch.randn(6, 4, 3, 3, device=device)}, assign=assign)
    check(x, conv.weight, algo)


@pytest.mark.parametrize("algo", ALGOS)
def test_module_to(x, algo, device):
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False).to(device)
    check(x, conv.weight, algo)
    conv.double()
    with torch.no_grad():
        conv.weight.mul_(2)   # one version bump on the float64 copy...
    conv.float()              # ...and back: a new storage whose version may match the first
    check(x, conv.weight, algo)


@pytest.mark.parametrize("algo", ALGOS)
def test_storage_replaced_at_the_same_address(x, algo, device):
    """The cache keeps the storage object (weakly), not its address: a freed block reallocated
    for the next weight must not pass for the old one."""
    w = nn.Parameter(torch.randn(6, 4, 3, 3, device=device))
    check(x, w, algo)
    for _ in range(4):  # the allocator tends to hand the freed block out again
        w.data = torch.randn(6, 4, 3, 3, device=device)
        check(x, w, algo)


def test_shared_storage_is_not_cached(device):
    """While another tensor holds the weight's storage, nothing is cached for it; alone, it is."""
    from zeroskip.kernels import launch
    w = torch.randn(6, 4, 3, 3, device=device)
    first = launch.packed_weight(w)
    assert launch.packed_weight(w) is first
    alias = w.view(-1)
    assert launch.packed_weight(w) is not launch.packed_weight(w)
    del alias
    again = launch.packed_weight(w)
    assert launch.packed_weight(w) is again and torch.equal(again, first)


def test_cached_derives_once_per_key(device):
    calls = []

    def make(t, k):
        calls.append(k)
        return t * k

    w = torch.randn(3, device=device)
    a, b = cache().cached(w, ("k", 2), make, w, 2), cache().cached(w, ("k", 3), make, w, 3)
    assert cache().cached(w, ("k", 2), make, w, 2) is a and cache().cached(w, ("k", 3), make, w, 3) is b
    assert calls == [2, 3]
    cache().clear()
    assert cache().cached(w, ("k", 2), make, w, 2) is not a and calls == [2, 3, 2]
    with torch.inference_mode():
        v = torch.randn(3, device=device)
    cache().cached(v, ("k", 2), make, v, 2)
    cache().cached(v, ("k", 2), make, v, 2)  # no version counter: derived on every call
    assert calls == [2, 3, 2, 2, 2]
