"""Launch overhead of the image negatives (issue 12 item 3), measured without a GPU: the operators one call
dispatches with the batch on the ``meta`` device stand for the CUDA kernels it would launch. Budgets are the
counts after the launch-overhead work (before: jigsaw 18, stitch 24, mixup 62 + 22 host ops, cutout 46,
cutmix 63, rotate 19, rotate60 23, shift 34; ``benchmarks/vision_negatives.py --ops-only`` prints both)."""

from __future__ import annotations

import pytest
import torch

import nda
from benchmarks.vision_negatives import OpCounter  # the benchmark's counting, not a copy (repo root on sys.path)

# kernels per call with the batch and the RNG on the device (the benchmark's own counter)
BUDGET = {
    "jigsaw": 7, "stitch": 10, "mixup": 33, "cutout": 21, "cutmix": 31, "rotate": 10,
    "rotate:angles=(60,-60)": 13, "shift": 17,
}


def _count(spec: str, generator: torch.Generator | None = None, shape=(256, 3, 32, 32)) -> OpCounter:
    neg = nda.build(spec)
    x = torch.empty(*shape, device="meta")
    neg(x, generator=generator)  # build the per-shape tables once
    with OpCounter(torch.device("meta")) as counter:
        neg(x, generator=generator)
    return counter


@pytest.mark.parametrize("spec", list(BUDGET))
def test_kernels_per_call_within_budget_and_no_host_work(spec):
    counter = _count(spec)
    assert counter.kernels <= BUDGET[spec], counter.names
    assert counter.host == 0  # parameter math stays on the device: no CPU tensors, no host-to-device copies
    assert counter.copies == 0


@pytest.mark.parametrize("spec", list(BUDGET))
def test_a_generator_on_another_device_costs_one_copy_per_draw_buffer(spec):
    """A CPU generator with device data draws on the CPU and copies: one copy per buffer of draws (mixup had 5
    copies of separately drawn tensors plus 4 of constants before)."""
    counter = _count(spec, generator=torch.Generator().manual_seed(0))
    assert counter.copies <= 2, spec


@pytest.mark.parametrize("spec", list(BUDGET))
def test_cached_tables_built_in_inference_mode_work_with_autograd(spec):
    """Per-shape tables are cached across calls: built inside ``torch.inference_mode`` they must still serve a
    later call whose input requires grad (an inference tensor cannot be saved for backward)."""
    neg = nda.build(spec)
    shape = (6, 3, 14, 14)
    with torch.inference_mode():
        neg(torch.rand(shape), generator=torch.Generator().manual_seed(0))
    x = torch.rand(shape, requires_grad=True)
    y = neg(x, generator=torch.Generator().manual_seed(0))
    y.float().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_stack_rows_reuses_parameter_rows_only_when_they_are_one_tensor():
    from nda.vision._ops import stack_rows

    base = torch.arange(10).view(2, 5).clone()
    assert stack_rows(base[0], base[1]) is base  # rows of one (2, N) tensor: no copy
    for a, b in ((base[1], base[0]), (torch.arange(5), torch.arange(5, 10))):
        out = stack_rows(a, b)
        assert out is not base and torch.equal(out, torch.stack([a, b]))
    big = torch.arange(15).view(3, 5).clone()
    assert torch.equal(stack_rows(big[0], big[1]), big[:2]) and stack_rows(big[0], big[1]) is not big


@pytest.mark.parametrize("spec", ["cutout", "cutmix"])
def test_edited_parameters_take_the_general_path(spec):
    """Parameters replaced by the user are separate tensors: apply must stack them, with the same result."""
    x = torch.rand(6, 3, 16, 16)
    neg = nda.build(spec)
    params = neg.sample_params(x, generator=torch.Generator().manual_seed(0))
    copied = {k: v.clone() for k, v in params.items()}
    assert torch.equal(neg.apply(x, params), neg.apply(x, copied))
    copied["left"] = torch.zeros(6, dtype=torch.long)
    y = neg.apply(x, copied)
    right = (params["width"] if spec == "cutmix" else params["size"]).max()
    assert torch.equal(y[..., int(right) :], x[..., int(right) :])  # nothing changes right of the moved boxes
