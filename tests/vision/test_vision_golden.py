"""Golden outputs of the image negatives and the seeded draws: a fixed input and seed must give bit-identical
results across refactors (e.g. the launch-overhead work of issue 12), so a speed-up can never silently change
what a seed means.

The fixture ``test_vision_golden.json`` holds a SHA-256 of every output (and of every sampled parameter
tensor, and of a second call on the same generator, which pins how many draws each call consumes), and the
sequence of random-number kernels each call dispatches (kind and element count, in order). The hashes are
CPU results; the RNG trace makes them carry over to CUDA: a CUDA generator assigns numbers per kernel and
thread, so one ``rand(2 * B)`` differs from two ``rand(B)`` there although it is identical on CPU. Same trace
+ same elementwise arithmetic = same numbers on every device. It was generated from the code *before* the
launch-overhead work. Regenerate an entry only for a deliberate,
documented output change (say which and why in the commit):

    python tests/vision/test_vision_golden.py --write

On a GPU, compare old and new code on the device itself (generator and data on CUDA), e.g. with the old package
unpacked by ``git archive <rev> nda | tar -x -C /tmp/before``:

    PYTHONPATH=/tmp/before python tests/vision/test_vision_golden.py --dump /tmp/old_cuda.json --device cuda
    python tests/vision/test_vision_golden.py --dump /tmp/new_cuda.json --device cuda
    python tests/vision/test_vision_golden.py --diff /tmp/old_cuda.json /tmp/new_cuda.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import nda
from nda import sampling

FIXTURE = Path(__file__).with_name("test_vision_golden.json")

# (case id, spec for nda.build, input shape, input dtype)
_F32, _U8 = torch.float32, torch.uint8
NEGATIVE_CASES: list[tuple[str, str | dict, tuple[int, ...], torch.dtype]] = []
for _dtype, _tag in ((_F32, "f32"), (_U8, "u8")):
    for _spec in (
        "jigsaw", "jigsaw:grid=3", "jigsaw:grid=4", "stitch", "stitch:direction=horizontal",
        "stitch:direction=vertical", "mixup", "mixup:alpha=1", "cutout", "cutout:fill=0.25",
        "cutout:min_size=3,max_size=7,reference=None", "cutmix", "cutmix:alpha=2", "rotate", "rotate:angles=60",
        "rotate:angles=(60,-60)", "rotate:angles=(90,45),interpolation=nearest,padding_mode=reflection",
        "shift", "shift:direction=horizontal", "shift:direction=vertical", "shift:direction=both",
    ):
        if _dtype == _U8 and _spec == "cutout:fill=0.25":
            _spec = "cutout:fill=64"
        NEGATIVE_CASES.append((f"{_spec}|32x32|{_tag}", _spec, (8, 3, 32, 32), _dtype))
# odd / non-square sizes (odd widths take other code paths in stitch, remainder borders in jigsaw)
for _dtype, _tag in ((_F32, "f32"), (_U8, "u8")):
    for _spec in (
        "jigsaw", "jigsaw:grid=3", "stitch", "stitch:direction=horizontal", "stitch:direction=vertical", "mixup",
        "cutout", "cutmix", "rotate:angles=180", "rotate:angles=60", "rotate:angles=(45,-30),padding_mode=border",
        "shift", "shift:direction=both",
    ):
        NEGATIVE_CASES.append((f"{_spec}|17x23|{_tag}", _spec, (5, 3, 17, 23), _dtype))
    for _spec in ("jigsaw", "jigsaw:grid=3", "stitch", "rotate", "cutout", "cutmix", "mixup", "shift"):
        NEGATIVE_CASES.append((f"{_spec}|15x15|{_tag}", _spec, (6, 1, 15, 15), _dtype))
# other float dtypes, a batch of two (pairwise edge), tiny images
for _spec in ("jigsaw", "stitch", "mixup", "cutout", "cutmix", "rotate", "rotate:angles=60", "shift"):
    for _dtype in (torch.float16, torch.bfloat16, torch.float64):
        NEGATIVE_CASES.append((f"{_spec}|32x32|{str(_dtype)[6:]}", _spec, (4, 3, 32, 32), _dtype))
    NEGATIVE_CASES.append((f"{_spec}|b2|f32", _spec, (2, 3, 16, 16), _F32))
    NEGATIVE_CASES.append((f"{_spec}|4x4|u8", _spec, (3, 2, 4, 4), _U8))
# a larger batch: more draws, so rare branches of the samplers are exercised
for _spec in ("jigsaw", "jigsaw:grid=3", "stitch", "mixup", "cutout", "cutmix", "rotate", "rotate:angles=60", "shift"):
    NEGATIVE_CASES.append((f"{_spec}|b64|f32", _spec, (64, 3, 16, 16), _F32))


_RNG_KINDS = {
    "rand": "uniform", "uniform": "uniform", "uniform_": "uniform", "randn": "normal", "normal": "normal",
    "normal_": "normal", "randint": "randint", "random_": "random", "randperm": "randperm", "bernoulli": "bernoulli",
    "bernoulli_": "bernoulli", "exponential_": "exponential", "multinomial": "multinomial", "rand_like": "uniform",
    "randn_like": "normal", "randint_like": "randint",
}


class RngTrace(TorchDispatchMode):
    """Records every random-number kernel as ``kind:numel`` (``torch.rand`` is ``empty().uniform_()``, so both
    record as ``uniform``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        kind = _RNG_KINDS.get(func.overloadpacket.__name__)
        if kind is not None:
            self.calls.append(f"{kind}:{out.numel()}")
        return out


def _traced(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, str]:
    with RngTrace() as trace:
        out = fn()
    return out, " ".join(trace.calls)


def _digest(t: torch.Tensor) -> str:
    t = t.detach().contiguous().cpu()
    head = f"{t.dtype}|{tuple(t.shape)}|".encode()
    raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return hashlib.sha256(head + raw).hexdigest()


def _images(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 1234) -> torch.Tensor:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def negative_digests(
    spec: str | dict, shape: tuple[int, ...], dtype: torch.dtype, device: str = "cpu"
) -> dict[str, str]:
    neg = nda.build(spec)
    x = _images(shape, dtype).to(device)
    out: dict[str, str] = {}
    g = torch.Generator(device=device).manual_seed(7)
    y, out["rng"] = _traced(lambda: neg(x, generator=g))
    out["call1"] = _digest(y)
    out["call2"] = _digest(neg(x, generator=g))  # same generator: pins the number of draws per call
    params = neg.sample_params(x, generator=torch.Generator(device=device).manual_seed(11))
    for key in sorted(params):
        out[f"param:{key}"] = _digest(params[key])
    out["apply"] = _digest(neg.apply(x, params))
    torch.manual_seed(99)  # no generator: the global RNG (of the data's device)
    out["global"] = _digest(neg(x))
    return out


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SAMPLING_CASES: dict[str, Callable[[], torch.Tensor]] = {
    "rand": lambda: sampling.rand(3, 5, generator=_g(1)),
    "randn": lambda: sampling.randn(40, generator=_g(2)),
    "randint_int": lambda: sampling.randint(3, 17, (50,), generator=_g(3)),
    "randint_tensor": lambda: sampling.randint(
        torch.tensor([0, 5, 9]), torch.tensor([2, 30, 10]), (3,), generator=_g(4)
    ),
    "batched_randperm": lambda: sampling.batched_randperm(6, 7, generator=_g(5)),
    "non_identity_randperm_4": lambda: sampling.non_identity_randperm(50, 4, generator=_g(6)),
    "non_identity_randperm_9": lambda: sampling.non_identity_randperm(50, 9, generator=_g(7)),
    "derangement": lambda: sampling.derangement(33, generator=_g(8)),
    "gamma_0.3": lambda: sampling.gamma(0.3, (200,), generator=_g(9)),
    "gamma_1": lambda: sampling.gamma(1.0, (200,), generator=_g(10)),
    "gamma_25": lambda: sampling.gamma(25.0, (200,), generator=_g(11)),
    "beta_25": lambda: sampling.beta(25.0, 25.0, (200,), generator=_g(12)),
    "beta_1": lambda: sampling.beta(1.0, 1.0, (200,), generator=_g(13)),
    "beta_0.5": lambda: sampling.beta(0.5, 0.5, (200,), generator=_g(14)),
    "beta_2_5": lambda: sampling.beta(2.0, 5.0, (200,), generator=_g(15)),
    "categorical": lambda: sampling.categorical(torch.tensor([1.0, 3.0, 0.0, 2.0]), 100, generator=_g(16)),
}


def compute_all(device: str = "cpu") -> dict[str, dict[str, str]]:
    result = {"negatives": {}, "sampling": {}}
    for case_id, spec, shape, dtype in NEGATIVE_CASES:
        result["negatives"][case_id] = negative_digests(spec, shape, dtype, device)
    if device != "cpu":
        return result
    for name, fn in SAMPLING_CASES.items():
        y, trace = _traced(fn)
        result["sampling"][name] = {"out": _digest(y), "rng": trace}
    return result


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_case_ids_are_unique():
    ids = [c[0] for c in NEGATIVE_CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", NEGATIVE_CASES, ids=[c[0] for c in NEGATIVE_CASES])
def test_negative_outputs_match_golden(case):
    case_id, spec, shape, dtype = case
    expected = _fixture()["negatives"][case_id]
    assert negative_digests(spec, shape, dtype) == expected


@pytest.mark.parametrize("name", list(SAMPLING_CASES))
def test_sampling_draws_match_golden(name):
    y, trace = _traced(SAMPLING_CASES[name])
    assert {"out": _digest(y), "rng": trace} == _fixture()["sampling"][name]


def test_every_registered_image_negative_has_a_golden_case():
    covered = {str(spec).split(":")[0] for _, spec, _, _ in NEGATIVE_CASES}
    assert set(nda.available("image")) <= covered


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--write"]:
        FIXTURE.write_text(json.dumps(compute_all(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {FIXTURE}")
        return 0
    if argv[:1] == ["--dump"] and len(argv) in (2, 4) and (len(argv) == 2 or argv[2] == "--device"):
        device = argv[3] if len(argv) == 4 else "cpu"
        Path(argv[1]).write_text(json.dumps(compute_all(device), indent=1, sort_keys=True) + "\n")
        print(f"wrote {argv[1]} ({device})")
        return 0
    if argv[:1] == ["--diff"] and len(argv) == 3:
        a, b = (json.loads(Path(f).read_text())["negatives"] for f in argv[1:])
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        print(f"{len(a.keys() & b.keys()) - len(differ)} cases identical, {len(differ)} differ" + "".join(
            f"\n  {k}: " + ", ".join(f for f in sorted(a.get(k, {})) if a.get(k, {}).get(f) != b.get(k, {}).get(f))
            for k in differ))
        return 1 if differ else 0
    raise SystemExit(
        "usage: python tests/vision/test_vision_golden.py --write | --dump FILE [--device DEV] | --diff FILE_A FILE_B"
    )


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
