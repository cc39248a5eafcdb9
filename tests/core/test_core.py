"""Core: seeded batched sampling, registry/build, composition. No modality code is needed here: the
tests register their own tiny negatives, so the core is tested on its own contract."""

from __future__ import annotations

import math

import pytest
import torch

import nda
from nda import registry, sampling
from nda.base import NegativeResult, apply_text, as_result
from nda.compose import Compose, RandomChoice
from nda.registry import parse_spec


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("n", [2, 3, 4, 9, 16])
def test_non_identity_randperm_is_a_permutation_and_never_identity(n):
    perms = sampling.non_identity_randperm(2000, n, generator=g(1))
    assert perms.shape == (2000, n)
    assert torch.equal(perms.sort(dim=1).values, torch.arange(n).expand(2000, n))
    assert not (perms == torch.arange(n)).all(dim=1).any()


def test_non_identity_randperm_is_uniform_over_the_others_for_small_n():
    perms = sampling.non_identity_randperm(23000, 3, generator=g(2))
    codes = perms[:, 0] * 9 + perms[:, 1] * 3 + perms[:, 2]
    counts = torch.bincount(codes, minlength=27)
    nonzero = counts[counts > 0]
    assert nonzero.numel() == 5  # 3! - 1 permutations, identity excluded
    expected = 23000 / 5
    assert ((nonzero.float() - expected).abs() < 5 * math.sqrt(expected)).all()


def test_non_identity_randperm_rejects_n_below_2():
    with pytest.raises(ValueError, match="n >= 2"):
        sampling.non_identity_randperm(4, 1)


@pytest.mark.parametrize("b", [2, 3, 7, 64])
def test_derangement_pairs_every_sample_with_another_once(b):
    for seed in range(20):
        partner = sampling.derangement(b, generator=g(seed))
        assert (partner != torch.arange(b)).all()
        assert torch.equal(partner.sort().values, torch.arange(b))


def test_derangement_batch_of_one_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        sampling.derangement(1)


def test_beta_moments_match_beta_25_25():
    x = sampling.beta(25.0, 25.0, (40000,), generator=g(3))
    mean, var = 0.5, 25 * 25 / (50**2 * 51)
    assert abs(x.mean().item() - mean) < 0.003
    assert abs(x.var().item() - var) < 0.1 * var
    assert ((x > 0) & (x < 1)).all()


@pytest.mark.parametrize("alpha", [0.3, 1.0, 2.5, 25.0])
def test_gamma_moments(alpha):
    x = sampling.gamma(alpha, (40000,), generator=g(4))
    assert abs(x.mean().item() - alpha) < 0.05 * max(alpha, 1)
    assert abs(x.var().item() - alpha) < 0.1 * max(alpha, 1)


def test_randint_with_per_sample_ranges():
    low = torch.tensor([0, 10, 100])
    high = torch.tensor([1, 12, 200])
    draws = torch.stack([sampling.randint(low, high, (3,), generator=g(s)) for s in range(200)])
    assert (draws[:, 0] == 0).all()
    assert set(draws[:, 1].tolist()) == {10, 11}
    assert ((draws[:, 2] >= 100) & (draws[:, 2] < 200)).all()
    with pytest.raises(ValueError, match="high > low"):
        sampling.randint(5, 5, (2,))


def test_categorical_follows_weights():
    idx = sampling.categorical(torch.tensor([1.0, 3.0, 0.0]), 20000, generator=g(5))
    counts = torch.bincount(idx, minlength=3).float() / 20000
    assert counts[2] == 0
    assert abs(counts[1].item() - 0.75) < 0.02
    with pytest.raises(ValueError, match="weights"):
        sampling.categorical(torch.tensor([-1.0, 1.0]), 3)


def test_same_seed_same_draws_different_seed_different():
    assert torch.equal(sampling.rand(5, generator=g(7)), sampling.rand(5, generator=g(7)))
    assert not torch.equal(sampling.rand(5, generator=g(7)), sampling.rand(5, generator=g(8)))


def test_bad_generator_is_a_type_error():
    with pytest.raises(TypeError, match="generator"):
        sampling.rand(3, generator=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        nda.make_generator("0")  # type: ignore[arg-type]


def test_generator_on_another_gpu_draws_there_then_copies():
    """Regression: only the device *type* was compared, so a cuda:0 generator with cuda:1 data failed in torch."""
    same = sampling._same_device
    assert same(torch.device("cpu"), torch.device("cpu")) and same(torch.device("cuda", 0), torch.device("cuda"))
    assert same(torch.device("cuda", 1), torch.device("cuda", 1))
    assert not same(torch.device("cuda", 0), torch.device("cuda", 1)) and not same(torch.device("cpu"), torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_drives_cuda_draws_identically():
    a = sampling.rand(4, 3, generator=g(9), device="cuda")
    b = sampling.rand(4, 3, generator=g(9), device="cpu")
    assert a.device.type == "cuda" and torch.equal(a.cpu(), b)


# ---------------------------------------------------------------------------------------------- registry
class AddConstant(nda.Negative):
    """A toy negative: x + value (records calls so composition order can be checked)."""

    name = "add_constant"
    modality = "image"

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def __call__(self, batch, *, generator=None):
        return batch + self.value


class Reverse(nda.Negative):
    name = "reverse"
    modality = "text"

    def __call__(self, batch, *, generator=None):
        return [t[::-1] for t in batch]


@pytest.fixture(autouse=True, scope="module")
def _toy_negatives():
    """Register the toy negatives for this module only: registering at import time leaked them into every
    other test file of the session (``nda list --modality image`` in test_cli then listed ``add_constant``)."""
    saved = dict(registry._REGISTRY)
    nda.register("add_constant", AddConstant)
    nda.register("reverse", Reverse)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def test_available_lists_builtins_and_registered():
    names = nda.available()
    for name in ["jigsaw", "stitch", "mixup", "cutout", "cutmix", "rotate", "shift",
                 "token_shuffle", "span_stitch", "counterfactual", "add_constant"]:
        assert name in names
    assert names == sorted(names)
    with pytest.raises(ValueError, match="modality"):
        nda.available("audio")


def test_parse_spec_values():
    assert parse_spec("jigsaw:grid=3") == ("jigsaw", {"grid": 3})
    assert parse_spec("x:a=0.5,b=true,c=(1,2),d=abc,e=none") == (
        "x", {"a": 0.5, "b": True, "c": (1, 2), "d": "abc", "e": None})
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("x:oops")


def test_build_forms():
    assert nda.build(None) is None and nda.build("none") is None and nda.build(" None ") is None
    neg = nda.build("add_constant:value=2")
    assert isinstance(neg, AddConstant) and neg.value == 2
    assert nda.build({"name": "add_constant", "value": 3}).value == 3
    choice = nda.build(["add_constant", ("add_constant:value=5", 3.0)])
    assert isinstance(choice, RandomChoice) and choice.weights == [1.0, 3.0]
    weighted = nda.build("add_constant@0.25|add_constant:value=2@0.75")
    assert isinstance(weighted, RandomChoice) and weighted.weights == [0.25, 0.75]
    comp = nda.build("add_constant>add_constant:value=10")
    assert isinstance(comp, Compose)
    assert torch.equal(comp(torch.zeros(2)), torch.full((2,), 11.0))
    assert nda.build(neg) is neg
    # round trip through config()
    assert nda.build(dict(neg.config())).value == 2


def test_build_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown negative 'nope'"):
        nda.build("nope")
    with pytest.raises(ValueError, match="bad arguments for negative 'add_constant'"):
        nda.build("add_constant:bogus=1")
    with pytest.raises(ValueError, match="empty"):
        nda.build("")
    with pytest.raises(TypeError, match="spec"):
        nda.build(3)
    with pytest.raises(ValueError, match="name"):
        nda.build({"value": 1})
    with pytest.raises(ValueError):
        nda.register("bad:name", AddConstant)
    with pytest.raises(ValueError, match="bad weight 'x' in spec part 'add_constant@x'"):
        nda.build("add_constant@x|add_constant")


def test_build_passes_overrides_only_to_accepting_constructors():
    neg = nda.build("add_constant", value=7, tokenizer="ignored")
    assert neg.value == 7


# ------------------------------------------------------------------------------------------- composition
def test_random_choice_per_sample_on_tensors_mixes_choices_and_is_seeded():
    choice = RandomChoice([AddConstant(1.0), AddConstant(100.0)], weights=[1, 1])
    x = torch.zeros(400, 1, 2, 2)
    out = choice(x, generator=g(0))
    values = out[:, 0, 0, 0]
    assert set(values.unique().tolist()) == {1.0, 100.0}
    assert (out == values.view(-1, 1, 1, 1)).all()  # whole sample from one negative
    assert 120 < (values == 1.0).sum() < 280
    assert torch.equal(out, choice(x, generator=g(0)))
    assert not torch.equal(out, choice(x, generator=g(1)))


def test_random_choice_zero_weight_is_never_used():
    choice = RandomChoice([AddConstant(1.0), AddConstant(100.0)], weights=[0, 1])
    assert (choice(torch.zeros(50, 1, 1, 1), generator=g(0)) == 100).all()


def test_random_choice_per_batch_uses_one_negative():
    choice = RandomChoice([AddConstant(1.0), AddConstant(100.0)], per="batch")
    seen = set()
    for seed in range(20):
        vals = choice(torch.zeros(8, 1, 1, 1), generator=g(seed)).unique().tolist()
        assert len(vals) == 1
        seen.update(vals)
    assert seen == {1.0, 100.0}


def test_random_choice_on_lists_and_mappings():
    choice = RandomChoice([Reverse(), Compose([Reverse(), Reverse()])])
    texts = ["abc", "xyz", "hello", "world"] * 10
    out = choice(texts, generator=g(0))
    assert all(o in (t, t[::-1]) for o, t in zip(out, texts))
    assert any(o == t for o, t in zip(out, texts)) and any(o != t for o, t in zip(out, texts))

    class Truncate(nda.Negative):
        name, modality, pad_token_id = "truncate", "text", 0

        def __call__(self, batch, *, generator=None):
            return {k: v[:, :2] for k, v in batch.items()}

    class Same(nda.Negative):
        name, modality = "same", "text"

        def __call__(self, batch, *, generator=None):
            return dict(batch)

    batch = {"input_ids": torch.arange(1, 13).view(4, 3), "attention_mask": torch.ones(4, 3, dtype=torch.long)}
    out = RandomChoice([Truncate(), Same()])(batch, generator=g(0))
    assert out["input_ids"].shape == (4, 3)
    truncated = out["attention_mask"][:, 2] == 0
    assert truncated.any() and (~truncated).any()  # both choices were drawn, so the checks below see both
    assert (out["input_ids"][truncated, 2] == 0).all()
    assert torch.equal(out["input_ids"][~truncated], batch["input_ids"][~truncated])


def test_random_choice_mapping_pads_on_the_tokenizer_side_and_leaves_other_keys():
    """Regression: shorter outputs were always right-padded (breaking left-padded batches), and every 2-D
    tensor was padded, including (B, 1) labels."""

    class LeftTokenizer:
        padding_side = "left"

    class DropFirst(nda.Negative):
        name, modality, pad_token_id, tokenizer = "drop_first", "text", 0, LeftTokenizer()

        def __call__(self, batch, *, generator=None):
            return {k: v[:, 1:] if v.shape[1] == 3 else v for k, v in batch.items()}

    class Same(nda.Negative):
        name, modality = "same", "text"

        def __call__(self, batch, *, generator=None):
            return dict(batch)

    ids = torch.arange(1, 13).view(4, 3)
    batch = {"input_ids": ids, "attention_mask": torch.ones(4, 3, dtype=torch.long), "labels": torch.arange(4).view(4, 1)}
    out = RandomChoice([DropFirst(), Same()])(batch, generator=g(0))
    dropped = out["attention_mask"][:, 0] == 0
    assert dropped.any() and (~dropped).any()
    assert torch.equal(out["input_ids"][dropped], torch.cat([torch.zeros(4, 1, dtype=ids.dtype), ids[:, 1:]], 1)[dropped])
    assert torch.equal(out["input_ids"][~dropped], ids[~dropped])
    assert torch.equal(out["labels"], batch["labels"])


def test_composition_errors():
    with pytest.raises(ValueError, match="non-empty"):
        Compose([])
    with pytest.raises(TypeError, match="callable"):
        RandomChoice([1, 2])
    with pytest.raises(ValueError, match="weights"):
        RandomChoice([AddConstant()], weights=[1, 2])
    with pytest.raises(ValueError, match="per"):
        RandomChoice([AddConstant()], per="epoch")
    with pytest.raises(TypeError, match="batch"):
        RandomChoice([AddConstant()])(3)


class FlipEven(nda.Negative):
    """Flips even-indexed texts only (a stand-in for a counterfactual that cannot flip some samples)."""

    name, modality, flips_labels, stochastic = "flip_even", "text", True, False

    def __call__(self, batch, *, labels=None, label_map=None, generator=None):
        flipped = [i % 2 == 0 for i in range(len(batch))]
        texts = [t.upper() if f else t for t, f in zip(batch, flipped)]
        new = None if labels is None else [1 - lab if f else lab for lab, f in zip(labels, flipped)]
        return NegativeResult(texts, flipped=flipped, valid=flipped, labels=new)


class Suffix(nda.Negative):
    name, modality = "suffix", "text"

    def __call__(self, batch, *, generator=None):
        return [t + "!" for t in batch]


def test_random_choice_keeps_per_sample_flipped_flags_of_label_flipping_negatives():
    texts = [f"t{i}" for i in range(40)]
    labels = [i % 3 % 2 for i in range(40)]
    choice = RandomChoice([FlipEven(), Suffix()])
    assert choice.flips_labels and choice.stochastic
    out = choice(texts, labels=labels, generator=g(0))
    assert isinstance(out, NegativeResult) and len(out.flipped) == len(out.valid) == len(out.labels) == 40
    for i, (o, f, v, lab) in enumerate(zip(out, out.flipped, out.valid, out.labels)):
        if o.endswith("!"):  # the non-flipping negative: a usable negative, label unchanged
            assert v and not f and lab == labels[i]
        else:
            assert f == v == (i % 2 == 0) and (o == texts[i]) == (not f)
            assert lab == (1 - labels[i] if f else labels[i])
    assert not all(out.flipped) and any(o.endswith("!") for o in out)
    # labels as a tensor come back as a tensor
    t = choice(texts, labels=torch.tensor(labels), generator=g(0))
    assert isinstance(t.labels, torch.Tensor) and t.labels.tolist() == out.labels


def test_compose_keeps_the_flip_contract_of_its_members():
    """Regression (issue 9 item 5): a composite lost the counterfactual's flags, so an unflipped sample that a
    later member changed looked like a usable label-flipped negative."""
    texts = ["a", "b", "c", "d"]
    out = Compose([FlipEven(), Suffix()])(texts, labels=[1, 1, 0, 0], generator=g(0))
    assert list(out) == ["A!", "b!", "C!", "d!"]
    assert out.flipped == [True, False, True, False]
    assert out.valid == [True, False, True, False]  # "b!" differs from "b", but its counterfactual did not flip
    assert out.labels == [0, 1, 1, 0]
    assert Compose([Suffix(), Suffix()])(texts, generator=g(0)).valid == [True] * 4
    twice = Compose([FlipEven(), FlipEven()])(texts, labels=[1, 1, 0, 0])
    assert twice.flipped == [False] * 4 and twice.labels == [1, 1, 0, 0]  # flipped twice: back to the original label
    assert twice.paraphrase == [True, False, True, False] and twice.valid == [False] * 4  # a positive, not a negative
    assert not Compose([Suffix()]).flips_labels and Compose([Suffix(), FlipEven()]).flips_labels
    assert not Compose([FlipEven()]).stochastic and not RandomChoice([FlipEven()]).stochastic
    with pytest.raises(TypeError, match="labels"):
        Compose([AddConstant()])(torch.zeros(2, 3), labels=[0, 1])


def test_plain_list_results_are_normalised_with_a_validity_mask():
    class Legacy(nda.Negative):  # an older negative: a list with its own ``flipped`` list, no declared contract
        name, modality = "legacy", "text"

        def __call__(self, batch, *, generator=None):
            out = type("R", (list,), {})(t if i else t + "?" for i, t in enumerate(batch))
            out.flipped = [True, False, True]
            return out

    r = as_result(["x", "y", "z"], Legacy()(["x", "y", "z"]))
    assert r.valid == [True, False, False] and r.flipped == [False] * 3  # equal to the source -> not usable
    assert apply_text(Suffix(), ["x"], labels=[3]).labels == [3]
    with pytest.raises(ValueError, match="one flag per text"):
        NegativeResult(["a"], flipped=[True, False])
    import pickle  # datasets.map(num_proc=...) pickles results: the flags must survive

    back = pickle.loads(pickle.dumps(NegativeResult(["a", "b"], flipped=[True, False], valid=[True, False], labels=[0, 1])))
    assert (back.texts, back.flipped, back.valid, back.labels) == (["a", "b"], [True, False], [True, False], [0, 1])


def test_random_choice_rejects_non_finite_weights():
    """Regression (issue 9 item 6): "jigsaw@inf|stitch@1" was accepted and always picked stitch."""
    for weights in ([math.inf, 1.0], [math.nan, 1.0], [1.0, -math.inf]):
        with pytest.raises(ValueError, match="finite"):
            RandomChoice([AddConstant(), AddConstant(2.0)], weights=weights)
    for spec in ("jigsaw@inf|stitch@1", "jigsaw@nan|stitch", "jigsaw@1e999|stitch"):
        with pytest.raises(ValueError, match="finite"):
            nda.build(spec)
    with pytest.raises(ValueError, match="finite"):
        nda.build([("jigsaw", math.inf), ("stitch", 1.0)])
    with pytest.raises(TypeError, match="numbers"):
        RandomChoice([AddConstant()], weights=["heavy"])


def test_spec_arguments_given_twice_or_non_finite_are_errors():
    """Regression (issue 9 item 6): "jigsaw:grid=2,grid=3" silently kept the last value; non-finite numbers
    reached the constructors."""
    with pytest.raises(ValueError, match="'grid' given twice"):
        parse_spec("jigsaw:grid=2,grid=3")
    with pytest.raises(ValueError, match="grid"):
        nda.build("jigsaw:grid=2, grid=3")
    for spec in ("cutout:max_size=inf", "mixup:alpha=nan", "mixup:alpha=1e999", "rotate:angles=(90,inf)"):
        with pytest.raises(ValueError, match="finite"):
            nda.build(spec)
    with pytest.raises(ValueError, match="alpha"):
        nda.build({"name": "mixup", "alpha": float("inf")})
    with pytest.raises(ValueError, match="unknown key"):
        nda.build({"choice": ["jigsaw", "stitch"], "wieghts": [1, 2]})


def test_random_choice_per_batch_config_round_trips():
    """Regression (issue 9): RandomChoice(per="batch").config() lost ``per``, so nda.build gave a per-sample choice."""
    neg = RandomChoice([AddConstant(), AddConstant(2.0)], weights=[1.0, 3.0], per="batch")
    again = nda.build(neg.config())
    assert isinstance(again, RandomChoice) and again.per == "batch" and again.weights == [1.0, 3.0]
    assert again.config() == neg.config()
    x = torch.zeros(6, 1)
    assert torch.equal(again(x, generator=g(5)), neg(x, generator=g(5)))
    assert nda.build(RandomChoice([AddConstant()]).config()).per == "sample"


def test_group_modality_is_shared_or_mixed():
    class Img(nda.Negative):
        name, modality = "img", "image"

        def __call__(self, batch, *, generator=None):
            return batch

    class Txt(nda.Negative):
        name, modality = "txt", "text"

        def __call__(self, batch, *, generator=None):
            return batch

    assert Compose([Img(), Img()]).modality == "image"
    assert RandomChoice([Img(), Txt()]).modality == "mixed"


def test_batch_indices_is_a_pure_function_of_step_and_partitions_each_epoch():
    from nda.run import batch_indices

    n, b, world = 20, 3, 2
    per_epoch = n // (b * world)
    seen = torch.cat([batch_indices(s, n, b, seed=5, rank=r, world_size=world) for s in range(per_epoch) for r in range(world)])
    assert seen.unique().numel() == seen.numel() == per_epoch * b * world  # no sample twice within an epoch
    assert torch.equal(batch_indices(7, n, b, seed=5, rank=1, world_size=world),
                       batch_indices(7, n, b, seed=5, rank=1, world_size=world))
    assert not torch.equal(batch_indices(0, n, b, seed=5), batch_indices(per_epoch * 2, n, b, seed=5))  # new epoch, new order
    with pytest.raises(ValueError, match="fewer than one global batch"):
        batch_indices(0, 5, 3, seed=0, world_size=2)


def test_leaves_flattens_nested_composites_in_order():
    a, b, c = AddConstant(1.0), AddConstant(2.0), AddConstant(3.0)
    assert nda.leaves(None) == []
    assert nda.leaves(a) == [a]
    assert nda.leaves(RandomChoice([Compose([a, b]), c])) == [a, b, c]


def test_parse_config_bare_flag_and_tracker_keeps_rows_up_to_the_resumed_step(tmp_path):
    import dataclasses

    from nda.run import Tracker, parse_config

    @dataclasses.dataclass
    class Cfg:
        resume: str | None = dataclasses.field(default=None, metadata={"bare": "latest"})
        steps: int = 3

    assert parse_config(Cfg, ["--resume", "--steps", "4"]) == Cfg(resume="latest", steps=4)
    assert parse_config(Cfg, ["--resume", "ckpt"]).resume == "ckpt"
    assert parse_config(Cfg, []).resume is None

    tracker = Tracker(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        tracker.log({"loss": float(step)}, step)
    resumed = Tracker(tmp_path, tensorboard=False, resumed_step=2)  # checkpoint saved at step 2
    assert [int(r["step"]) for r in resumed.rows] == [1, 2]
    assert Tracker(tmp_path, tensorboard=False).rows == []  # a fresh run starts a fresh file


def test_negative_result_concat_keeps_every_per_sample_field():
    a = NegativeResult(["x"], flipped=[True], valid=[True], labels=[0])
    b = NegativeResult(["y"], valid=[False], paraphrase=[True], labels=[1])
    both = NegativeResult.concat([a, b])
    assert (both.texts, both.flipped, both.valid, both.paraphrase, both.labels) == (
        ["x", "y"], [True, False], [True, False], [False, True], [0, 1])
    assert NegativeResult.concat([a, NegativeResult(["z"])]).labels is None  # a part without labels
