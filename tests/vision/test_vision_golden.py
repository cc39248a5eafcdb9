"""Golden outputs of the image negatives and the seeded draws: a fixed input and seed must give the same
results across refactors (e.g. the launch-overhead work of issue 12), so a speed-up can never silently change
what a seed means -- on any CPU.

The fixture ``test_vision_golden.json`` holds one record per tensor (every output, every sampled parameter
tensor, and a second call on the same generator, which pins how many draws each call consumes), and the
sequence of random-number kernels each call dispatches (kind and element count, in order), compared exactly.

How tensors are compared (:func:`record`, :func:`differs`):

- integer and bool tensors (permutations, partners, boxes, masks, ``randint``) are exact: a SHA-256 of their
  bytes. Integer draws are exact on every CPU (mt19937 bits and integer arithmetic).
- float tensors are compared with a tolerance, because their last bits depend on the CPU's vector kernels
  (ATen picks scalar/AVX2/AVX-512 code, with other ``log``/``exp``/``pow``/FMA rounding, at run time; an AMD
  EPYC and an Intel Xeon differ). The record keeps ``scale`` (max abs), ``min``, ``max``, ``mean``, four
  fixed random projections (weights in [-1, 1], divided by the element count) and the values themselves
  (all of them up to 256 elements, else 32 at fixed positions). Each value must satisfy
  ``|got - want| <= RTOL * |want| + ATOL * scale`` with ``RTOL = max(5e-5, 2 eps)``, ``ATOL = max(1e-5, 2 eps)``
  (``eps`` of the tensor's dtype: a 1-ulp flip of a float16/bfloat16 result passes); the statistics, which
  are bounded by the worst element, within ``(RTOL + ATOL) * scale``. Where the numbers come from: a few-ulp
  error of ``log(u)`` is multiplied by ``|ln u| / alpha <= 55`` in the Gamma boost ``u ** (1 / alpha)``
  (alpha = 0.3), ~110 ulps = 1.3e-5 relative; bilinear rotation samples at coordinates known to
  ``size * eps32``, ~4e-6 x the pixel slope on unit-scale images. Measured with ``ATEN_CPU_CAPABILITY=
  default|avx2|avx512``: at most 5.5e-6 relative (gamma) and 1.9e-6 absolute (rotate). A changed algorithm or
  draw moves values by orders of magnitude more (``tests/reliability/test_rel_golden.py`` shows perturbed
  draws fail).
- uint8 tensors are images rounded from float math (mixup, rotate): exact when the SHA-256 matches, else a
  rounding flip of one level is allowed (values within 1, mean and projections within 0.001 levels, i.e.
  at most 0.1% of the pixels flipped; a float error of ~1e-4 levels flips ~0.02% of them).

Regenerate the fixture only for a deliberate, documented output change (say which and why in the commit):

    python tests/vision/test_vision_golden.py --write

On a GPU, compare old and new code on the device itself (generator and data on CUDA), e.g. with the old package
unpacked by ``git archive <rev> nda | tar -x -C /tmp/before``:

    PYTHONPATH=/tmp/before python tests/vision/test_vision_golden.py --dump /tmp/old_cuda.json --device cuda
    python tests/vision/test_vision_golden.py --dump /tmp/new_cuda.json --device cuda
    python tests/vision/test_vision_golden.py --diff /tmp/old_cuda.json /tmp/new_cuda.json
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
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


FORMAT = 2
"""Fixture format: 2 = per-tensor records (exact integers, float tolerances); 1 = SHA-256 of every tensor."""
_FLOAT_RTOL, _FLOAT_ATOL = 5e-5, 1e-5  # see the module docstring for where these come from
_U8_LEVELS, _U8_FLIP_SHARE = 1.0, 1e-3
_MAX_FULL, _SAMPLES, _PROJECTIONS = 256, 32, 4


def _sha256(t: torch.Tensor) -> str:
    head = f"{t.dtype}|{tuple(t.shape)}|".encode()
    raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return hashlib.sha256(head + raw).hexdigest()


@functools.lru_cache(maxsize=None)
def _positions(numel: int) -> np.ndarray:
    """Fixed element positions kept in a record (a seeded integer draw: the same on every CPU)."""
    if numel <= _MAX_FULL:
        return np.arange(numel)
    return torch.randperm(numel, generator=torch.Generator().manual_seed(0))[:_SAMPLES].sort().values.numpy()


@functools.lru_cache(maxsize=None)
def _weights(numel: int) -> np.ndarray:
    """``(_PROJECTIONS, numel)`` float64 weights in [-1, 1) (mt19937 bits / 2**53: the same on every CPU)."""
    g = torch.Generator().manual_seed(1)
    return (torch.rand(_PROJECTIONS, numel, dtype=torch.float64, generator=g) * 2 - 1).numpy()


def record(t: torch.Tensor) -> dict:
    """What the fixture keeps of one tensor: exact for integers, values and statistics for the rest
    (computed in float64 numpy: single-threaded, so a busy machine's thread pool does not slow it down)."""
    t = t.detach().contiguous().cpu()
    rec: dict = {"dtype": str(t.dtype)[6:], "shape": list(t.shape)}
    if not (t.dtype.is_floating_point or t.dtype == torch.uint8) or t.numel() == 0:
        rec["sha256"] = _sha256(t)
        return rec
    if t.dtype == torch.uint8:
        rec["sha256"] = _sha256(t)
    flat = t.reshape(-1).double().numpy()
    r12 = lambda v: float(f"{v:.12g}")  # noqa: E731 - float64 statistics, shortened (far below any tolerance)
    rec["scale"] = r12(np.abs(flat).max())
    rec["min"], rec["max"], rec["mean"] = r12(flat.min()), r12(flat.max()), r12(flat.mean())
    rec["proj"] = [r12(v) for v in (_weights(flat.size) @ flat / flat.size).tolist()]
    rec["values"] = [float(f"{v:.9g}") for v in flat[_positions(flat.size)].tolist()]  # 9 digits: exact float32
    return rec


def _eps(dtype: str) -> float:
    return torch.finfo(getattr(torch, dtype)).eps


def differs(want: dict, got: dict) -> str | None:
    """``None`` when ``got`` matches the golden record ``want`` (exactly or within the stated tolerance)."""
    for key in ("dtype", "shape"):
        if want.get(key) != got.get(key):
            return f"{key} {got.get(key)} != golden {want.get(key)}"
    if "sha256" in want and want["sha256"] == got.get("sha256"):
        return None
    if "values" not in want:
        return "integer values differ (compared exactly)"
    if want["dtype"] == "uint8":
        elem_rtol, elem_atol, stat_tol = 0.0, _U8_LEVELS, _U8_LEVELS * _U8_FLIP_SHARE
        bound_tol = _U8_LEVELS
    else:
        eps = _eps(want["dtype"])
        elem_rtol, elem_atol = max(_FLOAT_RTOL, 2 * eps), max(_FLOAT_ATOL, 2 * eps) * want["scale"]
        stat_tol = bound_tol = elem_rtol * want["scale"] + elem_atol + 1e-12 * want["scale"]
    w = torch.tensor(want["values"], dtype=torch.float64)
    g = torch.tensor(got["values"], dtype=torch.float64)
    bad = ((g - w).abs() > elem_rtol * w.abs() + elem_atol).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        return (f"{len(bad)} of {len(w)} stored values outside tolerance (e.g. #{i}: {g[i].item():.9g} vs golden "
                f"{w[i].item():.9g}, tolerance {elem_rtol:g} rel + {elem_atol:g} abs)")
    for key, tol in (("scale", bound_tol), ("min", bound_tol), ("max", bound_tol), ("mean", stat_tol)):
        if abs(got[key] - want[key]) > tol:
            return f"{key} {got[key]:.12g} vs golden {want[key]:.12g} (tolerance {tol:g})"
    for k, (a, b) in enumerate(zip(got["proj"], want["proj"])):
        if abs(a - b) > stat_tol:
            return f"projection {k} {a:.12g} vs golden {b:.12g} (tolerance {stat_tol:g})"
    return None


def differs_case(want: dict, got: dict) -> list[str]:
    """Every field of one golden case (tensor records and RNG traces) that does not match, with why."""
    problems = []
    for field in sorted(want.keys() | got.keys()):
        a, b = want.get(field), got.get(field)
        if a is None or b is None:
            problems.append(f"{field}: {'missing' if b is None else 'not in the golden file'}")
        elif isinstance(a, str) or isinstance(b, str):
            if a != b:
                problems.append(f"{field}: {b!r} != golden {a!r}")
        elif (why := differs(a, b)) is not None:
            problems.append(f"{field}: {why}")
    return problems


def _images(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 1234) -> torch.Tensor:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def negative_records(
    spec: str | dict, shape: tuple[int, ...], dtype: torch.dtype, device: str = "cpu"
) -> dict[str, Any]:
    neg = nda.build(spec)
    x = _images(shape, dtype).to(device)
    out: dict[str, Any] = {}
    g = torch.Generator(device=device).manual_seed(7)
    y, out["rng"] = _traced(lambda: neg(x, generator=g))
    out["call1"] = record(y)
    out["call2"] = record(neg(x, generator=g))  # same generator: pins the number of draws per call
    params = neg.sample_params(x, generator=torch.Generator(device=device).manual_seed(11))
    for key in sorted(params):
        out[f"param:{key}"] = record(params[key])
    out["apply"] = record(neg.apply(x, params))
    torch.manual_seed(99)  # no generator: the global RNG (of the data's device)
    out["global"] = record(neg(x))
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


def compute_all(device: str = "cpu") -> dict[str, Any]:
    result: dict[str, Any] = {"format": FORMAT, "negatives": {}, "sampling": {}}
    for case_id, spec, shape, dtype in NEGATIVE_CASES:
        result["negatives"][case_id] = negative_records(spec, shape, dtype, device)
    if device != "cpu":
        return result
    for name, fn in SAMPLING_CASES.items():
        y, trace = _traced(fn)
        result["sampling"][name] = {"out": record(y), "rng": trace}
    return result


@functools.lru_cache(maxsize=1)
def _fixture() -> dict:
    data = json.loads(FIXTURE.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{FIXTURE}: format {data.get('format')}, expected {FORMAT}; regenerate it with --write")
    return data


def test_case_ids_are_unique():
    ids = [c[0] for c in NEGATIVE_CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", NEGATIVE_CASES, ids=[c[0] for c in NEGATIVE_CASES])
def test_negative_outputs_match_golden(case):
    case_id, spec, shape, dtype = case
    problems = differs_case(_fixture()["negatives"][case_id], negative_records(spec, shape, dtype))
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("name", list(SAMPLING_CASES))
def test_sampling_draws_match_golden(name):
    y, trace = _traced(SAMPLING_CASES[name])
    problems = differs_case(_fixture()["sampling"][name], {"out": record(y), "rng": trace})
    assert not problems, "; ".join(problems)


def test_every_registered_image_negative_has_a_golden_case():
    covered = {str(spec).split(":")[0] for _, spec, _, _ in NEGATIVE_CASES}
    assert set(nda.available("image")) <= covered


def _dumps(result: dict) -> str:
    """The fixture as JSON with one line per tensor record (small diffs, ~300 KB)."""
    lines = ["{", f' "format": {json.dumps(result["format"])},']
    for group in ("negatives", "sampling"):
        lines.append(f' {json.dumps(group)}: {{')
        cases = sorted(result[group].items())
        for i, (case, fields) in enumerate(cases):
            lines.append(f'  {json.dumps(case)}: {{')
            items = sorted(fields.items())
            lines += [f'   {json.dumps(k)}: {json.dumps(v, sort_keys=True)}' + ("," if j < len(items) - 1 else "")
                      for j, (k, v) in enumerate(items)]
            lines.append("  }" + ("," if i < len(cases) - 1 else ""))
        lines.append(" }" + ("," if group == "negatives" else ""))
    return "\n".join(lines + ["}", ""])


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--write"]:
        FIXTURE.write_text(_dumps(compute_all()))
        print(f"wrote {FIXTURE}")
        return 0
    if argv[:1] == ["--dump"] and len(argv) in (2, 4) and (len(argv) == 2 or argv[2] == "--device"):
        device = argv[3] if len(argv) == 4 else "cpu"
        Path(argv[1]).write_text(_dumps(compute_all(device)))
        print(f"wrote {argv[1]} ({device})")
        return 0
    if argv[:1] == ["--diff"] and len(argv) == 3:
        a, b = (json.loads(Path(f).read_text())["negatives"] for f in argv[1:])
        problems = {k: differs_case(a.get(k, {}), b.get(k, {})) for k in sorted(a.keys() | b.keys())}
        differ = {k: v for k, v in problems.items() if v}
        print(f"{len(problems) - len(differ)} cases match (integers exact, floats within tolerance), {len(differ)} "
              f"differ" + "".join(f"\n  {k}: " + "; ".join(v) for k, v in differ.items()))
        return 1 if differ else 0
    raise SystemExit(
        "usage: python tests/vision/test_vision_golden.py --write | --dump FILE [--device DEV] | --diff FILE_A FILE_B"
    )


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
