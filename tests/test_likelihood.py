import pytest
import torch
import torch.nn.functional as F

from aelab.losses import bce_with_logits, bernoulli_nll


def reference(logits, target):
    """torch's own kernel in float64: the value the CPU fast path must reproduce."""
    return F.binary_cross_entropy_with_logits(logits.double(), target.double(), reduction="none")


def cases():
    g = torch.Generator().manual_seed(0)
    logits = torch.cat(
        [
            torch.randn(500, generator=g) * 4,
            torch.tensor([0.0, 1e-8, -1e-8, 15.0, -15.0, 30.0, -30.0, 90.0, -90.0]),
        ]
    )
    binary = (torch.rand(logits.shape, generator=g) < 0.5).float()
    grey = torch.rand(logits.shape, generator=g)  # targets in [0, 1], as MNIST intensities
    return logits, binary, grey


@pytest.mark.parametrize("kind", ["binary", "grey"])
def test_cpu_bce_value_and_gradient_match_torch(kind):
    logits, binary, grey = cases()
    target = binary if kind == "binary" else grey
    leaf = logits.clone().requires_grad_()
    ours = bce_with_logits(leaf, target)
    grad_out = torch.rand(ours.shape, generator=torch.Generator().manual_seed(1))
    ours.backward(grad_out)

    ref_leaf = logits.double().requires_grad_()
    ref = reference(ref_leaf, target)
    ref.backward(grad_out.double())

    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref.detach(), rtol=1e-6, atol=2e-7)
    torch.testing.assert_close(leaf.grad.double(), ref_leaf.grad, rtol=1e-6, atol=1e-7)


def test_per_image_sum_matches_torch_on_an_image_batch():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(16, 1, 28, 28, generator=g) * 3
    target = torch.rand(16, 1, 28, 28, generator=g)
    ref = reference(logits, target).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_nll(logits, target).double(), ref, rtol=1e-6, atol=1e-4)


def test_low_precision_logits_are_scored_in_float32():
    """Under bf16 mixed precision the logits arrive in bf16; the loss must not be bf16."""
    logits, _, grey = cases()
    ours = bce_with_logits(logits.bfloat16(), grey)
    assert ours.dtype == torch.float32
    ref = reference(logits.bfloat16().float(), grey)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=2e-7)


def test_float64_stays_float64():
    logits, binary, _ = cases()
    ours = bce_with_logits(logits.double(), binary.double())
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, reference(logits, binary), rtol=1e-12, atol=1e-15)


def test_second_derivative_is_refused_not_wrong():
    logits = torch.randn(8, requires_grad=True)
    (grad,) = torch.autograd.grad(
        bce_with_logits(logits, torch.rand(8)).sum(), logits, create_graph=True
    )
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        torch.autograd.grad(grad.sum(), logits)
