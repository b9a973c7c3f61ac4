"""formats.skip_stats against a loop over tiles, blocks and windows, and bench.profile.skip_profile
against skip_stats on the inputs a model's convs see."""
import math

import pytest
import torch
from torch import nn

from zeroskip.bench import profile
from zeroskip.formats import skip_stats


def brute(x, k, s, p, tile, chunk):
    """Per image: zero fraction, dead channels, blocks left and compaction, by loops."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    padded = -(-c // chunk) * chunk
    out = []
    for i in range(n):
        live_tiles, blocks, work = [], 0, 0.0
        for ty in range(0, oh, tile):
            for tx in range(0, ow, tile):
                rows = range(max(ty * s - p, 0), min((min(ty + tile, oh) - 1) * s - p + k, h))
                cols = range(max(tx * s - p, 0), min((min(tx + tile, ow) - 1) * s - p + k, w))
                field = x[i][:, rows.start:rows.stop, cols.start:cols.stop]
                live = (field != 0).flatten(1).any(1).tolist() + [False] * (padded - c)
                blocks += sum(any(live[j:j + chunk]) for j in range(0, padded, chunk))
                work += math.ceil(sum(live) / chunk) * chunk / padded
                live_tiles.append(live)
        tiles = len(live_tiles)
        out.append(((x[i] == 0).float().mean().item(), (x[i] == 0).flatten(1).all(1).float().mean().item(),
                    blocks / (tiles * padded // chunk), work / tiles))
    return out


@pytest.mark.parametrize("k,s,p,tile,chunk,c", [(3, 1, 1, 8, 16, 20), (3, 2, 1, 4, 8, 16), (1, 1, 0, 8, 16, 3),
                                                 (5, 1, 2, 8, 4, 6)])
def test_skip_stats_matches_loops(k, s, p, tile, chunk, c):
    gen = torch.Generator().manual_seed(k * 100 + c)
    x = torch.relu(torch.randn(2, c, 19, 23, generator=gen) - 1.2)  # ~90% zeros
    x[0, : c // 2] = 0  # dead channels in image 0
    x[1, :, :, 12:] = 0  # an empty right half in image 1: whole tiles skip there
    got = skip_stats(x, k, s, p, tile=tile, chunk=chunk)
    want = brute(x, k, s, p, tile, chunk)
    for i, (zeros, dead, blocks, compaction) in enumerate(want):
        assert got.zero_fraction[i].item() == pytest.approx(zeros)
        assert got.dead_channels[i].item() == pytest.approx(dead)
        assert got.blocks_left[i].item() == pytest.approx(blocks)
        assert got.compaction[i].item() == pytest.approx(compaction)
    assert 0 < got.compaction.min() and got.compaction.max() <= 1 and "compaction" in str(got)


def test_skip_stats_extremes_and_errors():
    dense = skip_stats(torch.rand(1, 32, 16, 16) + 0.1, 3, 1, 1)
    assert dense.compaction.item() == 1.0 and dense.blocks_left.item() == 1.0 and dense.zero_fraction.item() == 0.0
    empty = skip_stats(torch.zeros(1, 32, 16, 16), 3, 1, 1)
    assert empty.compaction.item() == 0.0 and empty.dead_channels.item() == 1.0
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        skip_stats(torch.zeros(1, 4, 8, 8), 3, chunk=0)
    with pytest.raises(ValueError, match="input must be an"):
        skip_stats(torch.zeros(4, 8, 8), 3)


def test_skip_profile_matches_skip_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding="same"), nn.ReLU(), nn.Conv2d(32, 8, 1)).eval()
    x = torch.randn(5, 3, 24, 24)
    layers = profile.skip_profile(model, [x[:3], x[3:]], batch=2)
    assert [layer["name"] for layer in layers] == ["0", "3", "5"]
    with torch.no_grad():
        second = model[:3](x)
    want = skip_stats(second, 3, 1, 1)
    got = layers[1]
    assert got["shape"] == [16, 12, 12] and got["flops"] == 2 * 5 * 32 * 12 * 12 * 16 * 9
    assert got["mean"] == pytest.approx(want.zero_fraction.mean().item())
    assert got["max"] == pytest.approx(want.zero_fraction.max().item())
    assert got["compaction"] == pytest.approx(want.compaction.mean().item())
    assert got["dead_channels"] == pytest.approx(want.dead_channels.mean().item())
    bound = profile.stack_bound(layers)
    dense = sum(layer["flops"] for layer in layers)
    assert bound == pytest.approx(dense / sum(layer["flops"] * layer["compaction"] for layer in layers))
