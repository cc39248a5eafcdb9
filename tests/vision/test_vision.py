"""Tests of the image negatives (nda/vision): each asserts a property of the output checked independently of
the implementation (patch multisets, torch.rot90 / torch.roll references, hand-computed means)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nda
from nda.vision import CutMix, Cutout, Jigsaw, MixUp, Rotate, Shift, Stitch

ALL = [Jigsaw(), Stitch(), MixUp(), Cutout(), CutMix(), Rotate(), Rotate(angles=(60, -60)), Shift()]
IDS = ["jigsaw", "stitch", "mixup", "cutout", "cutmix", "rotate90", "rotate60", "shift"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def images(b: int = 8, c: int = 3, h: int = 32, w: int = 32, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    x = torch.rand(b, c, h, w, generator=gen(seed))
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def cells(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K*K, C*h*w) patches of the top-left divisible region, row-major."""
    b, c, h, w = x.shape
    ph, pw = h // k, w // k
    r = x[..., : ph * k, : pw * k].reshape(b, c, k, ph, k, pw).permute(0, 2, 4, 1, 3, 5)
    return r.reshape(b, k * k, -1)


def found_permutation(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """For each output cell, the (unique) input cell of the SAME sample it equals; asserts it is a bijection."""
    cx, cy = cells(x, k), cells(y, k)
    eq = (cy[:, :, None, :] == cx[:, None, :, :]).all(-1)  # (B, out cell, in cell)
    assert bool((eq.sum(-1) == 1).all()), "some output patch is not exactly one input patch of the same sample"
    perm = eq.float().argmax(-1)
    assert bool((perm.sort(-1).values == torch.arange(k * k)).all()), "output patches are not a multiset of input patches"
    return perm


# ---------------------------------------------------------------- jigsaw
def test_jigsaw_is_a_non_identity_patch_permutation_and_covers_all_permutations():
    x = images(2300, 3, 8, 8)
    t = Jigsaw(grid=2)
    params = t.sample_params(x, generator=gen(1))
    y = t.apply(x, params)
    perm = found_permutation(x, y, 2)
    assert torch.equal(perm, params["perm"])
    assert not bool((perm == torch.arange(4)).all(-1).any()), "identity permutation drawn"
    distinct = {tuple(p) for p in perm.tolist()}
    assert len(distinct) == 23  # all 4! - 1 non-identity permutations occur
    assert torch.equal(t(x, generator=gen(1)), y)


@pytest.mark.parametrize("grid", [3, 4])
def test_jigsaw_larger_grids(grid):
    x = images(64, 3, 12, 12)
    y = Jigsaw(grid=grid)(x, generator=gen(2))
    perm = found_permutation(x, y, grid)
    assert not bool((perm == torch.arange(grid * grid)).all(-1).any())


def test_jigsaw_remainder_keep_shuffles_region_and_leaves_border():
    x = images(16, 3, 33, 35)
    y = Jigsaw(grid=2)(x, generator=gen(0))
    assert torch.equal(y[..., 32:, :], x[..., 32:, :]) and torch.equal(y[..., :, 34:], x[..., :, 34:])
    perm = found_permutation(x[..., :32, :34], y[..., :32, :34], 2)
    assert not bool((perm == torch.arange(4)).all(-1).any())


def test_jigsaw_bad_sizes_and_args():
    with pytest.raises(ValueError, match="not divisible"):
        Jigsaw(grid=2, remainder="error")(images(2, 3, 33, 32))
    Jigsaw(grid=2, remainder="error")(images(2, 3, 32, 32))  # divisible: fine
    with pytest.raises(ValueError, match="larger than the image"):
        Jigsaw(grid=4)(images(2, 3, 3, 8))
    with pytest.raises(ValueError, match="grid"):
        Jigsaw(grid=1)
    with pytest.raises(ValueError, match="remainder"):
        Jigsaw(remainder="crop")


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 4), h=st.integers(2, 17), w=st.integers(2, 17), grid=st.integers(2, 4), seed=st.integers(0, 10**6)
)
def test_jigsaw_property(b, h, w, grid, seed):
    if grid > min(h, w):
        with pytest.raises(ValueError):
            Jigsaw(grid=grid)(images(b, 2, h, w, seed=seed))
        return
    x = images(b, 2, h, w, seed=seed)
    y = Jigsaw(grid=grid)(x, generator=gen(seed))
    hc, wc = h - h % grid, w - w % grid
    assert torch.equal(y[..., hc:, :], x[..., hc:, :]) and torch.equal(y[..., :, wc:], x[..., :, wc:])
    perm = found_permutation(x, y, grid)
    assert not bool((perm == torch.arange(grid * grid)).all(-1).any())


# ---------------------------------------------------------------- stitch
@pytest.mark.parametrize("width", [16, 15])  # even: half-row segment copy; odd: masked select
@pytest.mark.parametrize("direction", ["horizontal", "vertical", "random"])
def test_stitch_halves_come_from_two_different_samples(direction, width):
    x = images(64, 3, 17, width)
    y = Stitch(direction=direction)(x, generator=gen(3))
    half_h, half_w = 17 // 2, width // 2
    vertical_seen = []
    for b in range(64):  # test-side loop: recover the partner from the output alone
        top_own = torch.equal(y[b, :, :half_h], x[b, :, :half_h])
        left_own = torch.equal(y[b, :, :, :half_w], x[b, :, :, :half_w])
        assert top_own != left_own
        vertical = top_own
        vertical_seen.append(vertical)
        other = y[b, :, half_h:] if vertical else y[b, :, :, half_w:]
        ref = x[:, :, half_h:] if vertical else x[:, :, :, half_w:]
        matches = [p for p in range(64) if torch.equal(ref[p], other)]
        assert len(matches) == 1 and matches[0] != b
    if direction == "horizontal":
        assert not any(vertical_seen)
    elif direction == "vertical":
        assert all(vertical_seen)
    else:
        assert 10 < sum(vertical_seen) < 54


def test_stitch_params_partner_is_a_derangement():
    x = images(50)
    p = Stitch().sample_params(x, generator=gen(0))["partner"]
    assert not bool((p == torch.arange(50)).any()) and torch.equal(p.sort().values, torch.arange(50))


# ---------------------------------------------------------------- mixup
def test_mixup_is_a_convex_blend_with_beta_25_weights():
    x = images(2000, 3, 4, 4)
    t = MixUp()
    params = t.sample_params(x, generator=gen(4))
    y = t.apply(x, params)
    lam, partner = params["lam"], params["partner"]
    assert not bool((partner == torch.arange(2000)).any())
    assert bool(((lam > 0) & (lam < 1)).all())
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert 0.06 < lam.std().item() < 0.08  # Beta(25, 25): sd = sqrt(1 / (4 * 51)) = 0.070
    ref = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[partner]
    torch.testing.assert_close(y, ref)


def test_mixup_uint8_rounds():
    x = images(16, dtype=torch.uint8)
    t = MixUp()
    params = t.sample_params(x, generator=gen(5))
    y = t.apply(x, params)
    lam = params["lam"].double().view(-1, 1, 1, 1)
    ref = (lam * x.double() + (1 - lam) * x[params["partner"]].double()).round()
    assert y.dtype == torch.uint8 and (y.double() - ref).abs().max() <= 1  # float32 vs float64 rounding ties


# ---------------------------------------------------------------- cutout
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cutout_fills_square_with_mean_of_replaced_pixels(dtype):
    x = images(40, 3, 32, 32, dtype=dtype)
    t = Cutout()
    params = t.sample_params(x, generator=gen(6))
    y = t.apply(x, params)
    top, left, size = params["top"], params["left"], params["size"]
    assert bool(((size >= 10) & (size <= 20)).all()) and bool((top + size <= 32).all() and (left + size <= 32).all())
    for b in range(40):
        t0, l0, s = int(top[b]), int(left[b]), int(size[b])
        mean = x[b, :, t0 : t0 + s, l0 : l0 + s].double().mean(dim=(1, 2))
        expected = x[b].clone()
        fill = mean.round() if dtype == torch.uint8 else mean
        expected[:, t0 : t0 + s, l0 : l0 + s] = fill.to(dtype).view(3, 1, 1)
        if dtype == torch.uint8:
            assert torch.equal(y[b], expected)
        else:
            torch.testing.assert_close(y[b], expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(t(x, generator=gen(6)), y)


def test_cutout_size_scales_with_image_and_constant_fill():
    t = Cutout()
    assert t.size_range(32, 32) == (10, 20) and t.size_range(64, 48) == (15, 30)
    assert Cutout(reference=None, min_size=3, max_size=5).size_range(100, 100) == (3, 5)
    x = images(8, 3, 64, 64)
    size = t.sample_params(x, generator=gen(0))["size"]
    assert bool(((size >= 20) & (size <= 40)).all())
    y = Cutout(fill=0.0)(x, generator=gen(1))
    zeros = (y == 0).all(1).sum((1, 2))
    assert bool(((zeros >= 400) & (zeros <= 1600)).all())
    with pytest.raises(ValueError):
        Cutout(min_size=20, max_size=10)
    with pytest.raises(ValueError):
        Cutout(fill="median")


# ---------------------------------------------------------------- cutmix
def test_cutmix_pastes_partner_box():
    x = images(500, 3, 16, 16)
    t = CutMix()
    params = t.sample_params(x, generator=gen(7))
    y = t.apply(x, params)
    partner = params["partner"]
    assert not bool((partner == torch.arange(500)).any())
    area = params["height"] * params["width"]
    assert bool((area >= 1).all()) and bool((area <= 256).all())
    lam = params["lam"]
    assert bool(((lam >= 0) & (lam < 1)).all())
    torch.testing.assert_close(lam, 1 - area.float() / 256)
    for b in range(0, 500, 7):
        t0, l0 = int(params["top"][b]), int(params["left"][b])
        h, w = int(params["height"][b]), int(params["width"][b])
        expected = x[b].clone()
        expected[:, t0 : t0 + h, l0 : l0 + w] = x[int(partner[b]), :, t0 : t0 + h, l0 : l0 + w]
        assert torch.equal(y[b], expected)
    assert bool((y != x).any(1).flatten(1).any(1).all())  # every negative differs from its source
    # side ratio r = sqrt(U); a centred-uniform box keeps r - r^2/4 of each side after clipping, so the expected
    # area share is E[(r - r^2/4)^2] = 1/2 - 1/5 + 1/48 = 0.321 (a bit less after flooring to whole pixels)
    assert 0.26 < (1 - lam).mean().item() < 0.34


# ---------------------------------------------------------------- rotate
def test_rotate_matches_rot90_and_is_never_identity():
    x = images(300, 3, 9, 9)
    t = Rotate()
    params = t.sample_params(x, generator=gen(8))
    y = t.apply(x, params)
    k = (params["angle"] / 90).long()
    assert set(k.tolist()) == {1, 2, 3}
    for b in range(300):
        assert torch.equal(y[b], torch.rot90(x[b], int(k[b]), dims=(-2, -1)))


@settings(max_examples=20, deadline=None)
@given(size=st.integers(1, 20), b=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_rotate_property_square(size, b, seed):
    x = images(b, 2, size, size, seed=seed)
    t = Rotate()
    params = t.sample_params(x, generator=gen(seed))
    y = t.apply(x, params)
    for i in range(b):
        assert torch.equal(y[i], torch.rot90(x[i], int(params["angle"][i]) // 90, dims=(-2, -1)))


def test_rotate_non_square_and_bad_angles():
    with pytest.raises(ValueError, match="non-square"):
        Rotate()(images(2, 3, 8, 10))
    x = images(4, 3, 8, 10)
    torch.testing.assert_close(Rotate(angles=180)(x), x.flip(-1).flip(-2))
    for bad in (0, 360, (90, -720), (), "90"):
        with pytest.raises(ValueError):
            Rotate(angles=bad)


def test_rotate_affine_direction_and_dtypes():
    x = images(64, 3, 16, 16)
    t = Rotate(angles=(90, 60))  # not all multiples of 90: affine path for all
    params = t.sample_params(x, generator=gen(9))
    y = t.apply(x, params)
    is90 = params["angle"] == 90
    assert 0 < int(is90.sum()) < 64
    torch.testing.assert_close(y[is90], torch.rot90(x[is90], 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    assert (y[~is90] - x[~is90]).abs().mean() > 0.1
    # 60 degrees counter-clockwise: a smooth blob 4 px right of the centre moves to 4 px at 60 degrees up-right
    r, c = torch.meshgrid(torch.arange(31.0), torch.arange(31.0), indexing="ij")
    blob = torch.exp(-((r - 15) ** 2 + (c - 19) ** 2) / (2 * 1.5**2)).expand(2, 1, 31, 31)
    yb = Rotate(angles=60)(blob, generator=gen(0))[0, 0]
    centroid = ((yb * r).sum() / yb.sum(), (yb * c).sum() / yb.sum())
    assert abs(centroid[0] - (15 - 4 * math.sin(math.pi / 3))) < 0.05 and abs(centroid[1] - (15 + 4 * math.cos(math.pi / 3))) < 0.05
    assert abs(yb.sum() / blob[0, 0].sum() - 1) < 0.01
    xu = images(4, 3, 16, 16, dtype=torch.uint8)
    yu = Rotate(angles=60)(xu, generator=gen(1))
    assert yu.dtype == torch.uint8 and yu.shape == xu.shape
    # non-square with a non-multiple of 90: same frame, aspect kept
    assert Rotate(angles=45)(images(2, 3, 8, 12)).shape == (2, 3, 8, 12)


def test_rotate_affine_grid_equals_torch_affine_grid():
    """The separable sampling grid is F.affine_grid of the aspect-corrected rotation matrix."""
    import torch.nn.functional as F

    x = images(6, 3, 12, 20)
    t = Rotate(angles=(33, -71, 60), interpolation="bilinear")
    params = t.sample_params(x, generator=gen(0))
    a = torch.deg2rad(params["angle"])
    c, s, z = torch.cos(a), torch.sin(a), torch.zeros(6)
    theta = torch.stack([c, -s * 12 / 20, z, s * 20 / 12, c, z], 1).view(6, 2, 3)
    ref = F.grid_sample(x, F.affine_grid(theta, [6, 3, 12, 20], align_corners=False), align_corners=False)
    torch.testing.assert_close(t.apply(x, params), ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- shift
@pytest.mark.parametrize("direction", ["random", "horizontal", "vertical", "both"])
def test_shift_is_cyclic_roll_within_bounds(direction):
    x = images(200, 3, 32, 32)
    t = Shift(direction=direction)
    params = t.sample_params(x, generator=gen(10))
    y = t.apply(x, params)
    dy, dx = params["shift"].unbind(1)
    for b in range(0, 200, 3):
        assert torch.equal(y[b], torch.roll(x[b], (int(dy[b]), int(dx[b])), dims=(-2, -1)))
    nonzero_y, nonzero_x = dy != 0, dx != 0
    for d, nz in ((dy, nonzero_y), (dx, nonzero_x)):
        assert bool(((d[nz].abs() >= 10) & (d[nz].abs() <= 25)).all())
    expect = {
        "random": nonzero_y ^ nonzero_x,
        "horizontal": ~nonzero_y & nonzero_x,
        "vertical": nonzero_y & ~nonzero_x,
        "both": nonzero_y & nonzero_x,
    }[direction]
    assert bool(expect.all())
    assert bool((dy < 0).any() or (dx < 0).any()) and bool((dy > 0).any() or (dx > 0).any())


def test_shift_output_alone_is_a_roll():
    x = images(3, 1, 32, 32)
    y = Shift()(x, generator=gen(11))
    for b in range(3):
        rolls = [
            (sy, sx) for sy in range(32) for sx in range(32) if torch.equal(torch.roll(x[b], (sy, sx), dims=(-2, -1)), y[b])
        ]
        assert len(rolls) == 1
        sy, sx = rolls[0]
        amount = max(min(sy, 32 - sy), min(sx, 32 - sx))
        assert (sy == 0) != (sx == 0) and 7 <= amount <= 16  # 10..25 px cyclic: 25 == -7 (mod 32)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 40), w=st.integers(2, 40), seed=st.integers(0, 10**6))
def test_shift_property_any_size(h, w, seed):
    x = images(3, 2, h, w, seed=seed)
    t = Shift(direction="both")
    params = t.sample_params(x, generator=gen(seed))
    y = t.apply(x, params)
    for b in range(3):
        dy, dx = (int(v) for v in params["shift"][b])
        assert dy % h != 0 and dx % w != 0
        assert torch.equal(y[b], torch.roll(x[b], (dy, dx), dims=(-2, -1)))


# ---------------------------------------------------------------- shared protocol
@pytest.mark.parametrize("t", ALL, ids=IDS)
def test_seeded_reproducibility(t):
    x = images(8)
    a, b, c = t(x, generator=gen(0)), t(x, generator=gen(0)), t(x, generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("t", ALL, ids=IDS)
def test_shape_dtype_device_preserved(t, dtype, device):
    x = images(4, 3, 16, 16, dtype=dtype).to(device)
    y = t(x, generator=gen(0, device))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("t", ALL, ids=IDS)
def test_cpu_generator_with_cuda_data_matches_cpu(t):
    x = images(8)
    cpu = t(x, generator=gen(0))
    cuda = t(x.cuda(), generator=gen(0)).cpu()
    if isinstance(t, (MixUp, Cutout)) or (isinstance(t, Rotate) and not t._exact):  # float sums/blends: last-bit differences
        torch.testing.assert_close(cuda, cpu, atol=1e-4, rtol=0)
    else:
        assert torch.equal(cuda, cpu)


@pytest.mark.parametrize("t", ALL, ids=IDS)
def test_bad_inputs(t):
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        t(torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match="batch"):
        t(torch.randint(0, 255, (4, 3, 16, 16)))
    with pytest.raises(TypeError):
        t([[1.0]])
    with pytest.raises(ValueError, match="empty"):
        t(torch.rand(0, 3, 16, 16))
    with pytest.raises(TypeError, match="generator"):
        t(torch.rand(4, 3, 16, 16), generator=0)


@pytest.mark.parametrize("cls", [Stitch, MixUp, CutMix])
def test_pairwise_batch_of_one_is_an_error(cls):
    assert cls.pairwise
    with pytest.raises(ValueError, match="at least 2"):
        cls()(torch.rand(1, 3, 8, 8))
    cls()(torch.rand(2, 3, 8, 8))  # two are enough


def test_non_pairwise_batch_of_one_works():
    for t in (Jigsaw(), Cutout(), Rotate(), Shift()):
        assert not t.pairwise and t(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


# ---------------------------------------------------------------- registry / composition
def test_registry_build_and_config_round_trip():
    assert set(nda.available("image")) >= {"jigsaw", "stitch", "mixup", "cutout", "cutmix", "rotate", "shift"}
    t = nda.build("jigsaw:grid=3")
    assert isinstance(t, Jigsaw) and t.grid == 3 and t.modality == "image"
    x = images(6, 3, 36, 36)
    found_permutation(x, t(x, generator=gen(0)), 3)
    for neg in ALL + [nda.build("rotate:angles=(60,-60)"), nda.build("cutout:min_size=8,max_size=12")]:
        rebuilt = nda.build(neg.config())
        assert repr(rebuilt) == repr(neg)
        assert torch.equal(rebuilt(x, generator=gen(2)), neg(x, generator=gen(2)))


def test_build_random_choice_and_compose():
    x = images(32, 3, 16, 16)
    choice = nda.build(["jigsaw", "stitch"])
    y = choice(x, generator=gen(0))
    assert y.shape == x.shape and bool((y != x).flatten(1).any(1).all())
    for b in range(32):  # each sample is a jigsaw of itself or a stitch with another sample
        is_jig = bool((cells(y[b : b + 1], 2)[0][:, None] == cells(x[b : b + 1], 2)[0][None]).all(-1).any(-1).all())
        is_stitch = torch.equal(y[b, :, :8], x[b, :, :8]) or torch.equal(y[b, :, :, :8], x[b, :, :, :8])
        assert is_jig or is_stitch
    composed = nda.build("cutout>rotate")
    g = gen(5)
    manual = Rotate()(Cutout()(x, generator=g), generator=g)
    assert torch.equal(composed(x, generator=gen(5)), manual)
    assert math.isclose(float((composed(x, generator=gen(5)) != x).float().mean()), float((manual != x).float().mean()))


# ---------------------------------------------------------------- review additions
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_select_and_paste_match_torch_where_bit_for_bit(dtype):
    from nda.vision._ops import paste_, select

    b = images(4, 3, 8, 8, seed=1, dtype=dtype)
    a = images(4, 3, 8, 8, seed=2, dtype=dtype)
    if dtype.is_floating_point:  # extreme finite values must survive too (lerp with weights 0/1 is exact for them)
        b[0, 0, 0, :2] = torch.tensor([torch.finfo(dtype).max, torch.finfo(dtype).tiny], dtype=dtype)
    mask = torch.rand(4, 1, 8, 8, generator=gen(3)) < 0.5
    fill = a[:, :, :1, :1]  # (B, C, 1, 1), broadcast like cutout's fill
    for m in (mask, mask.float()):
        assert torch.equal(select(m, a, b).view(-1).view(torch.uint8), torch.where(mask, a, b).view(-1).view(torch.uint8))
        assert torch.equal(select(m, fill, b), torch.where(mask, fill, b))
        assert torch.equal(paste_(b.clone(), a, m), torch.where(mask, a, b))


@pytest.mark.parametrize("t", ALL, ids=IDS)
def test_channels_last_and_non_contiguous_inputs_give_the_same_negatives(t):
    x = images(6, 3, 16, 16)
    ref = t(x, generator=gen(4))
    assert torch.equal(t(x.contiguous(memory_format=torch.channels_last), generator=gen(4)), ref)
    assert torch.equal(t(x.transpose(-1, -2).contiguous().transpose(-1, -2), generator=gen(4)), ref)
    big = images(6, 5, 16, 16)
    assert torch.equal(t(big[:, 1:4], generator=gen(4)), t(big[:, 1:4].contiguous(), generator=gen(4)))


def test_cutout_constant_fill_rounds_for_uint8_and_rejects_out_of_range():
    x = images(8, 3, 32, 32, dtype=torch.uint8)
    t = Cutout(fill=127.6)
    params = t.sample_params(x, generator=gen(0))
    y = t.apply(x, params)
    for b in range(8):
        top, left, s = (int(params[k][b]) for k in ("top", "left", "size"))
        assert bool((y[b, :, top : top + s, left : left + s] == 128).all())  # rounded, not truncated to 127
    with pytest.raises(ValueError, match="fill=300"):
        Cutout(fill=300)(x, generator=gen(0))


@pytest.mark.parametrize("cls", [Stitch, MixUp, CutMix])
def test_pairwise_batch_of_two_pairs_the_two_samples(cls):
    x = images(2, 3, 16, 16)
    params = cls().sample_params(x, generator=gen(5))
    assert params["partner"].tolist() == [1, 0]


class _BlockingHostCopies:
    """Records what would be a stream sync on CUDA, run on the ``meta`` device (no GPU needed): blocking
    CPU -> device copies (``.to(device)``, ``torch.tensor(..., device=...)``, ``torch.as_tensor``) and ``.item()``
    (which fails outright on meta tensors)."""

    def __init__(self, monkeypatch):
        from torch.utils._python_dispatch import TorchDispatchMode

        self.hits: list[str] = []
        hits = self.hits

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func is torch.ops.aten._to_copy.default:
                    src, dev = args[0], kwargs.get("device")
                    if dev is not None and torch.device(dev).type == "meta" and src.device.type == "cpu":
                        if not kwargs.get("non_blocking", False):
                            hits.append(f"blocking .to(meta) of a {tuple(src.shape)} CPU tensor")
                return func(*args, **kwargs)

        self.mode = Mode()
        for fn_name in ("tensor", "as_tensor"):
            original = getattr(torch, fn_name)

            def wrapped(*args, _original=original, _name=fn_name, **kwargs):
                if kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "meta":
                    hits.append(f"torch.{_name}(..., device=meta)")
                return _original(*args, **kwargs)

            monkeypatch.setattr(torch, fn_name, wrapped)


@pytest.mark.parametrize("t", ALL + [nda.build("jigsaw|cutout"), Cutout(fill=0.5)], ids=IDS + ["choice", "cutout_fill"])
def test_no_blocking_host_copies_in_the_hot_path(t, monkeypatch):
    """Regression: per-call ``torch.tensor(table, device=x.device)`` (rotate), ``as_tensor(python_int, device)``
    (randint), ``cdf.to(device)`` (categorical) and gamma's constants each cost a CUDA stream sync."""
    x = torch.empty(4, 3, 16, 16, device="meta")
    t(x)  # warm the per-device caches (permutation and rotation tables are built once per device)
    probe = _BlockingHostCopies(monkeypatch)
    with probe.mode:
        t(x)
        t(x, generator=gen(0))  # a CPU generator for device data: drawn on CPU, copied without blocking
    assert probe.hits == []
