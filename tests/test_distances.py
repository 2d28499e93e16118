"""Distances: the same matrices as pytorch-metric-learning's, plus half precision on CPU."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances

from labelspace.distances import CosineSimilarity, DotProductSimilarity, LpDistance


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (LpDistance(), pml_distances.LpDistance()),
        (LpDistance(normalize_embeddings=False), pml_distances.LpDistance(normalize_embeddings=False)),
        (LpDistance(power=2), pml_distances.LpDistance(power=2)),
        (LpDistance(p=1), pml_distances.LpDistance(p=1)),
        (CosineSimilarity(), pml_distances.CosineSimilarity()),
        (DotProductSimilarity(), pml_distances.DotProductSimilarity()),
    ],
)
def test_matches_pytorch_metric_learning(ours, theirs):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    reference = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(ours(query), theirs(query))
    torch.testing.assert_close(ours(query, reference), theirs(query, reference))
    assert ours.is_inverted == theirs.is_inverted


def test_by_hand_and_orientation():
    embeddings = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert LpDistance(normalize_embeddings=False)(embeddings)[0, 1].item() == pytest.approx(18**0.5)
    assert DotProductSimilarity(normalize_embeddings=False)(embeddings)[0, 1].item() == 4.0
    assert CosineSimilarity()(embeddings)[0, 1].item() == pytest.approx(0.8)
    closer, farther = torch.tensor(0.1), torch.tensor(0.9)
    assert LpDistance().margin(closer, farther) > 0
    assert CosineSimilarity().margin(torch.tensor(0.9), torch.tensor(0.1)) > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu(dtype):
    embeddings = torch.randn(6, 8, generator=torch.Generator().manual_seed(1)).to(dtype)
    for distance in (LpDistance(), CosineSimilarity()):
        matrix = distance(embeddings)
        assert matrix.dtype == dtype and torch.isfinite(matrix).all()
        torch.testing.assert_close(matrix.float(), distance(embeddings.float()), atol=2e-2, rtol=2e-2)


def test_rejects_non_matrix_input():
    with pytest.raises(ValueError, match="2-D"):
        LpDistance()(torch.zeros(3))
