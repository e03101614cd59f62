"""mmcl.losses against values computed by hand (Eq. 8.1/8.2 of seed 003; SimCLR NT-Xent)."""

from __future__ import annotations

import math

import pytest
import torch

from mmcl.losses import (
    LOSSES,
    fresh_negatives,
    fresh_negatives_symmetric,
    infonce,
    infonce_symmetric,
    nt_xent,
    similarity_matrix,
)


def ce(logits: list[float], target: int) -> float:
    """Cross-entropy of one row, written out: -l_t + log sum_j exp(l_j)."""
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


R = 1 / math.sqrt(2)


def test_similarity_matrices_by_hand():
    a = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(similarity_matrix(a, b, "cosine"), torch.tensor([[1.0, 0.0], [R, R]]))
    # -||a_k - b_l||^2: (3,0)-(1,0) -> 4; (3,0)-(0,2) -> 13; (1,1)-(1,0) -> 1; (1,1)-(0,2) -> 2
    assert torch.allclose(similarity_matrix(a, b, "euclidean"), torch.tensor([[-4.0, -13.0], [-1.0, -2.0]]))


def test_infonce_identity_pairs():
    z = torch.eye(2)
    # each row: logits (1, 0), target on the diagonal -> log(1 + e^-1)
    assert infonce_symmetric(z, z).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # tau = 0.5 doubles the logits -> log(1 + e^-2)
    assert infonce_symmetric(z, z, tau=0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_infonce_symmetric_averages_both_directions():
    z1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = [[1.0, 0.0], [R, R]]  # cosine(z1_k, z2_l)
    image_to_text = (ce(s[0], 0) + ce(s[1], 1)) / 2
    text_to_image = (ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1)) / 2
    assert image_to_text == pytest.approx(0.503204, abs=1e-6)
    assert text_to_image == pytest.approx(0.479110, abs=1e-6)
    assert infonce(z1, z2).item() == pytest.approx(image_to_text, abs=1e-6)
    assert infonce(z2, z1).item() == pytest.approx(text_to_image, abs=1e-6)
    assert infonce_symmetric(z1, z2).item() == pytest.approx((image_to_text + text_to_image) / 2, abs=1e-6)


def test_infonce_euclidean_by_hand():
    z1 = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    z2 = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    s = [[0.0, -1.0], [-1.0, -2.0]]  # -squared distances, symmetric here
    expected = (ce(s[0], 0) + ce(s[1], 1)) / 2
    assert expected == pytest.approx(0.813262, abs=1e-6)
    assert infonce_symmetric(z1, z2, similarity="euclidean").item() == pytest.approx(expected, abs=1e-6)


def test_fresh_negatives_by_hand():
    """Upstream LpSimCLRLoss (p 2, squared distances, positive in the log-mean-exp) on 1-d
    points: anchors 0, 1; positives 0, 2; fresh negatives 1, 3; tau 1 and 2."""
    a, p, f = (torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [3.0]]))
    for tau in (1.0, 2.0):
        row0 = 0 / tau + math.log((math.exp(-1 / tau) + math.exp(-9 / tau) + math.exp(0)) / 3)
        row1 = 1 / tau + math.log((math.exp(0) + math.exp(-4 / tau) + math.exp(-1 / tau)) / 3)
        assert fresh_negatives(a, p, f, tau).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # symmetric: the second direction anchors on p and takes its own fresh batch g
    g = torch.tensor([[-1.0], [0.5]])
    row0 = 0 + math.log((math.exp(-1) + math.exp(-0.25) + 1) / 3)  # anchor 0: d(0,-1)=1, d(0,.5)=.25
    row1 = 1 + math.log((math.exp(-9) + math.exp(-2.25) + math.exp(-1)) / 3)  # anchor 2
    expected = 0.5 * (fresh_negatives(a, p, f).item() + (row0 + row1) / 2)
    assert fresh_negatives_symmetric(a, p, f, g).item() == pytest.approx(expected, rel=1e-6)
    # the negatives are the fresh batch, not the other modality: moving p changes only the positive term
    far = fresh_negatives(a, p + 100, f)
    assert far.item() > 1000 and torch.isfinite(far)


def test_nt_xent_uses_both_modalities_as_negatives():
    z = torch.eye(2)
    # anchor e1 sees e2 (0), its partner e1 (1) and e2 (0); all four anchors alike
    expected = ce([0.0, 1.0, 0.0], 1)
    assert expected == pytest.approx(0.551445, abs=1e-6)
    assert nt_xent(z, z).item() == pytest.approx(expected, abs=1e-6)
    assert nt_xent(z, z).item() > infonce_symmetric(z, z).item()  # more negatives, larger loss


def test_cosine_loss_ignores_scale_and_gradient_flows():
    z1 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    z2 = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    loss = infonce_symmetric(z1, z2)
    assert infonce_symmetric(3 * z1, 0.5 * z2).item() == pytest.approx(loss.item(), abs=1e-6)
    loss.backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


def test_perfectly_aligned_large_batch_approaches_zero_at_low_temperature():
    z = torch.eye(8)
    assert infonce_symmetric(z, z, tau=0.01).item() < 1e-6


@pytest.mark.parametrize("fn", list(LOSSES.values()))
def test_shape_errors(fn):
    with pytest.raises(ValueError, match="equal shape"):
        fn(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="similarity"):
        fn(torch.zeros(2, 2), torch.zeros(2, 2), similarity="dot")
