"""Supervised pair data for sentence encoders: (anchor, positive, hard negative) rows from several sources.

Why: unsupervised SimCSE + NDA negatives never taught MiniLM negation; what does (NegMPNet / CANNOT,
supervised SimCSE) is *real* positives -- paraphrases, entailed hypotheses -- next to hard negatives that
contradict them. Each loader turns one public format into rows ``(anchor, positive, negative)`` where
``negative == ""`` means "this row has no hard negative" (the model masks it out of the loss).

=============  ==================================================================================================
kind           what is read (one ``kind:path`` per source; ``--pairs snli:DIR,mrpc:FILE``)
=============  ==================================================================================================
``snli``       SentEval's SNLI folder ``{s1,s2,labels}.{dev,test}``: entailed hypothesis = positive, a contradicting
               hypothesis of the SAME premise = hard negative. SNLI dev+test are the only SNLI pairs provided and
               no evaluation set reads SNLI, so its *test* split is allowed here (the one exception; see
               :data:`TEST_SPLIT_ALLOWED`)
``mrpc``       ``msr_paraphrase_train.txt`` (Quality TAB id TAB id TAB s1 TAB s2): ``Quality == 1`` pairs
``sick``       ``SICK.txt``: ``SemEval_set == TRAIN`` only; ENTAILMENT pairs (A -> B), a CONTRADICTION partner of
               the same ``sentence_A`` as hard negative when there is one
``cad-nli``    CAD's ``NLI`` folder (Kaushik et al.): ``original``, ``revised_hypothesis`` and ``revised_premise``
               ``train.tsv``; a premise's entailed / contradicting hypotheses (and a hypothesis' entailing /
               contradicting premises) become triples
``stsb``       an STS-B *train* csv: pairs scored ``>= min_score`` (no hard negative)
``tsv``        any ``anchor<TAB>positive[<TAB>negative]`` file (read through :func:`nda.data.text.load_pairs`)
=============  ==================================================================================================

Test splits are refused (a file or folder named ``test``), except SNLI's. Rows are deduplicated per source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nda.data.sentence_pairs import read_table

__all__ = ["PAIR_KINDS", "TEST_SPLIT_ALLOWED", "PairSource", "PairSet", "parse_pair_specs", "load_pair_source",
           "nli_triples", "names_a_test_split"]

PAIR_KINDS = ("snli", "mrpc", "sick", "cad-nli", "stsb", "tsv")
TEST_SPLIT_ALLOWED = ("snli",)
"""Kinds whose test split may be trained on: SNLI (the issue allows it: dev+test are the SNLI pairs provided and
the evaluation suite reads no SNLI). Every other kind refuses a path named as a test split."""

_ENT, _CON = "entailment", "contradiction"


def names_a_test_split(path: str) -> bool:
    """Whether a file or its folder is named as a test split (``sts-test.csv``, ``STS16-en-test/...``)."""
    p = Path(path)
    return "test" in re.split(r"[^a-z0-9]+", p.name.lower()) or re.split(r"[^a-z0-9]+", p.parent.name.lower())[-1] == "test"


@dataclass(frozen=True)
class PairSource:
    """One ``kind:path`` of ``--pairs``."""

    kind: str
    path: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{Path(self.path).name}"


@dataclass
class PairSet:
    """Rows ``(anchor, positive, negative)`` of one source (``negative == ""``: none) and counts."""

    source: PairSource
    rows: list[tuple[str, str, str]]
    stats: dict[str, int] = field(default_factory=dict)


def parse_pair_specs(specs: Sequence[str] | str, argument: str = "--pairs") -> list[PairSource]:
    """``"snli:DIR,mrpc:FILE"`` (or a list of such strings) -> sources, each path checked to exist and not to
    be a test split (SNLI excepted)."""
    items = [s for part in ([specs] if isinstance(specs, str) else specs) for s in str(part).split(",") if s.strip()]
    if not items:
        raise ValueError(f"{argument} needs at least one kind:path, kinds: {', '.join(PAIR_KINDS)}")
    sources = []
    for item in items:
        kind, sep, path = item.strip().partition(":")
        if not sep or kind not in PAIR_KINDS or not path:
            raise ValueError(f"{argument} {item!r}: expected kind:path with kind one of {', '.join(PAIR_KINDS)}")
        p = Path(path).expanduser()
        want_dir = kind in ("snli", "cad-nli")
        if not (p.is_dir() if want_dir else p.is_file()):
            raise ValueError(f"{argument} {item!r}: {path} is not a {'folder' if want_dir else 'file'}")
        if kind not in TEST_SPLIT_ALLOWED and names_a_test_split(str(p)):
            raise ValueError(f"{argument} {item!r}: {path} is named as a test split; only SNLI's test split may be "
                             "trained on (no evaluation set reads SNLI)")
        if kind == "stsb" and "dev" in re.split(r"[^a-z0-9]+", p.name.lower()):
            raise ValueError(f"{argument} {item!r}: STS-B dev is an evaluation split; give sts-train.csv")
        sources.append(PairSource(kind, str(p)))
    return sources


def nli_triples(premises: Sequence[str], hypotheses: Sequence[str], labels: Sequence[str]
                ) -> list[tuple[str, str, str]]:
    """``(premise, entailed hypothesis, contradicting hypothesis of the same premise)`` per entailment pair; the
    j-th entailment of a premise takes its (j mod n)-th contradiction, ``""`` when it has none."""
    ent: dict[str, list[str]] = {}
    con: dict[str, list[str]] = {}
    for p, h, y in zip(premises, hypotheses, labels):
        y = y.strip().lower()
        if y in (_ENT, _CON):
            (ent if y == _ENT else con).setdefault(p.strip(), []).append(h.strip())
    rows = []
    for p, hyps in ent.items():
        negs = con.get(p, [])
        rows += [(p, h, negs[j % len(negs)] if negs else "") for j, h in enumerate(hyps)]
    return rows


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None


def _snli(folder: Path) -> list[tuple[str, str, str]]:
    premises, hypotheses, labels = [], [], []
    for split in ("dev", "test"):
        files = [folder / f"{name}.{split}" for name in ("s1", "s2", "labels")]
        if not all(f.is_file() for f in files):
            continue
        cols = [_read_lines(f) for f in files]
        if len({len(c) for c in cols}) != 1:
            raise ValueError(f"{folder}: s1/s2/labels.{split} have different line counts {[len(c) for c in cols]}")
        premises += cols[0]
        hypotheses += cols[1]
        labels += cols[2]
    if not labels:
        raise ValueError(f"{folder}: no s1/s2/labels.{{dev,test}} files (SentEval's SNLI layout)")
    return nli_triples(premises, hypotheses, labels)


def _mrpc(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if lineno == 1 and fields[0].strip().lower().startswith("quality") or not line.strip():
            continue
        if len(fields) < 5 or fields[0].strip() not in ("0", "1"):
            raise ValueError(f"{path}:{lineno}: expected Quality(0/1) TAB id TAB id TAB sentence1 TAB sentence2")
        if fields[0].strip() == "1":
            rows.append((fields[3].strip(), fields[4].strip(), ""))
    return rows


def _sick(path: Path) -> list[tuple[str, str, str]]:
    table = read_table(path, ("sentence_A", "sentence_B", "entailment_label", "SemEval_set"))
    train = [r for _, r in table if r[3].strip() == "TRAIN"]
    if not train:
        raise ValueError(f"{path}: no rows with SemEval_set == TRAIN")
    return nli_triples([r[0] for r in train], [r[1] for r in train], [r[2] for r in train])


def _cad_nli(folder: Path) -> list[tuple[str, str, str]]:
    names = ("sentence1", "sentence2", "gold_label")
    parts = {sub: folder / sub / "train.tsv" for sub in ("original", "revised_hypothesis", "revised_premise")}
    absent = [str(p) for p in parts.values() if not p.is_file()]
    if len(absent) == len(parts):
        raise ValueError(f"{folder}: none of {', '.join(absent)} (CAD's NLI layout)")
    rows: list[tuple[str, str, str]] = []
    hyp = [r for sub in ("original", "revised_hypothesis") if parts[sub].is_file()
           for _, r in read_table(parts[sub], names)]
    rows += nli_triples([r[0] for r in hyp], [r[1] for r in hyp], [r[2] for r in hyp])
    if parts["revised_premise"].is_file():  # same hypothesis, premises revised: hypothesis -> entailing premise
        prem = [r for sub in ("original", "revised_premise") if parts[sub].is_file()
                for _, r in read_table(parts[sub], names)]
        rows += nli_triples([r[1] for r in prem], [r[0] for r in prem], [r[2] for r in prem])
    return rows


def _stsb(path: Path, min_score: float) -> list[tuple[str, str, str]]:
    from nda.metrics.sts import load_sts

    data = load_sts(path)
    return [(a, b, "") for a, b, s in zip(data.sentences1, data.sentences2, data.scores) if s >= min_score]


def _tsv(path: Path) -> list[tuple[str, str, str]]:
    from nda.data.text import load_pairs

    corpus = load_pairs(path)
    rows = []
    for start in range(0, len(corpus), 10_000):
        for row in corpus[start : start + 10_000]:
            a, p, n = (*row, "")[:3]
            rows.append((a.strip(), p.strip(), n.strip()))
    return rows


def load_pair_source(source: PairSource, min_score: float = 4.0) -> PairSet:
    """The rows of one source, rows with an empty anchor or positive dropped, duplicates dropped."""
    path = Path(source.path)
    loaders = {"snli": _snli, "mrpc": _mrpc, "sick": _sick, "cad-nli": _cad_nli, "tsv": _tsv,
               "stsb": lambda p: _stsb(p, min_score)}
    try:
        raw = loaders[source.kind](path)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"--pairs {source.kind}:{source.path}: {err}") from err
    rows = list(dict.fromkeys(r for r in raw if r[0] and r[1]))
    if not rows:
        raise ValueError(f"--pairs {source.kind}:{source.path}: no (anchor, positive) pairs found")
    stats = {"read": len(raw), "duplicates_or_empty": len(raw) - len(rows), "rows": len(rows),
             "with_hard_negative": sum(1 for r in rows if r[2])}
    return PairSet(source, rows, stats)

