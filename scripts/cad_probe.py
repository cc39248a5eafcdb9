"""Do automatic counterfactuals help a sentiment classifier like human ones do? A frozen-encoder probe on CAD.

Protocol (Kaushik et al., ICLR 2020 data; the numbers of issue 11): frozen all-MiniLM-L6-v2 embeddings
(cached, so a second run only encodes new texts) and a scikit-learn logistic regression trained on

- ``orig``:            the original IMDb training reviews (``sentiment/orig/train.tsv``, 1,707);
- ``orig + auto[S]``:  plus the automatic counterfactual of every review that strategy ``S`` flips, with the
                       flipped label (an ``nda.build`` spec: ``counterfactual:strategy='rules'``, ...);
- ``orig + human``:    plus the human counterfactuals (``sentiment/new/train.tsv``),

and evaluated on the original reviews and on the human counterfactuals. Two evaluations:

1. ``dev``: the official dev split (``orig/dev`` and ``new/dev``, 245 reviews each; deterministic: the
   rules and lbfgs involve no randomness, so one run; 95% bootstrap intervals show how noisy 245 reviews are);
2. ``cv``: 5-fold cross-validation over the 1,703 training *pairs* (original + its human counterfactual),
   repeated with 3 fold seeds -- the randomness of this protocol: train on 4/5 (+ their automatic or
   human counterfactuals), test on the held-out originals and their human counterfactuals (1,703 + 1,703
   test reviews per repeat, so differences of a point are visible). Tune on this, not on dev.

    python scripts/cad_probe.py --data-dir /work/shared/data/text/cad \
        --cf "counterfactual:strategy=rules" counterfactual "counterfactual:min_coverage=0.5" --probe-filter \
        --out benchmarks/results/cad_probe.json

``--probe-filter`` adds, per strategy, the variant that keeps only the counterfactuals a probe trained on the
(fold's) originals already scores as flipped (the filter issue 11 suggests). Encoding ~4k reviews takes
5-15 minutes on 2 shared CPU cores the first time; later runs only encode new texts (``--cache-dir``).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from cad_measurement import read_tsv  # a sibling script: this folder is on sys.path

import nda
from nda.data.labeled_text import read_counterfactual_pairs, word_diff
from nda.models.sentence import default_model_path
from nda.reporting import save_report


class CachedEncoder:
    """Sentence embeddings keyed by the SHA-1 of the text, stored in one ``.npz`` under ``cache_dir``."""

    def __init__(self, model_path: str, cache_dir: Path, batch_size: int = 32) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        tag = hashlib.sha1(model_path.encode()).hexdigest()[:10]
        self.file = cache_dir / f"emb_{tag}.npz"
        self.cache: dict[str, np.ndarray] = {}
        if self.file.exists():
            with np.load(self.file) as data:
                self.cache = {k: data[k] for k in data.files}
        self._model = None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.cache}.items())
        if missing:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self.model_path, device="cpu")
            t0 = time.perf_counter()
            print(f"encoding {len(missing)} new texts ...", flush=True)
            emb = self._model.encode([t for _, t in missing], batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
            print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
            for (k, _), e in zip(missing, emb):
                self.cache[k] = e.astype(np.float32)
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp.npz")
            np.savez(tmp, **self.cache)
            tmp.replace(self.file)
        return np.stack([self.cache[k] for k in keys])



def load_pairs(root: Path, split: str) -> list[tuple[str, int, str]]:
    """``(original, label 0/1, human counterfactual)`` for every CAD pair of ``split`` (the one CAD reader's rule:
    the first row of a batch is the original; a counterfactual identical to its original is skipped)."""
    paired = read_counterfactual_pairs(root / "sentiment" / "combined" / "paired" / f"{split}_paired.tsv")
    return [(p.original, int(p.label == "Positive"), p.counterfactual) for p in paired if p.changed]


def fit_eval(x_train: np.ndarray, y_train: np.ndarray, tests: dict[str, tuple[np.ndarray, np.ndarray]], c: float):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=5000)
    clf.fit(x_train, y_train)
    return {name: (clf.predict(x) == y) for name, (x, y) in tests.items()}


def probe_keep(x_orig: np.ndarray, y_orig: np.ndarray, x_cf: np.ndarray, y_cf: np.ndarray, c: float) -> np.ndarray:
    """Indices of the counterfactuals that a probe trained on the originals assigns their flipped label."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=5000).fit(x_orig, y_orig)
    return np.flatnonzero(clf.predict(x_cf) == y_cf)


def bootstrap_ci(correct: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct), size=(reps, len(correct)))
    means = correct[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the CAD folder (with sentiment/)")
    parser.add_argument("--cf", nargs="+", default=["counterfactual:strategy=rules", "counterfactual"],
                        help="automatic counterfactual specs (nda.build syntax) to compare")
    parser.add_argument("--encoder", default=default_model_path())
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/nda_cad_probe"))
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fold-split seeds of the CV part")
    parser.add_argument("--no-cv", action="store_true", help="only the dev evaluation")
    parser.add_argument("--probe-filter", action="store_true",
                        help="also: keep only the automatic counterfactuals a probe on the originals scores as flipped")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cad_probe.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.data_dir
    enc = CachedEncoder(args.encoder, args.cache_dir)

    train = read_tsv(root / "sentiment" / "orig" / "train.tsv")
    human = read_tsv(root / "sentiment" / "new" / "train.tsv")
    dev_o = read_tsv(root / "sentiment" / "orig" / "dev.tsv")
    dev_h = read_tsv(root / "sentiment" / "new" / "dev.tsv")

    def xy(rows):
        return enc([r["Text"] for r in rows]), np.array([int(r["Sentiment"] == "Positive") for r in rows])

    x_tr, y_tr = xy(train)
    x_hu, y_hu = xy(human)
    tests = {"orig/dev": xy(dev_o), "new/dev": xy(dev_h)}

    # automatic counterfactuals of every training review, per strategy
    autos: dict[str, dict[str, object]] = {}
    for spec in args.cf:
        cf = nda.build(spec)
        t0 = time.perf_counter()
        res = cf([r["Text"] for r in train], labels=y_tr.tolist())
        sec = time.perf_counter() - t0
        keep = [i for i, f in enumerate(res.flipped) if f]
        texts = [res[i] for i in keep]
        autos[spec] = {
            "idx": keep, "texts": texts, "labels": np.array([res.labels[i] for i in keep]), "x": enc(texts) if texts else None,
            "flip_rate": len(keep) / len(train), "seconds": sec,
            "words_changed": float(np.mean([word_diff(train[i]["Text"], res[i]).changed for i in keep])) if keep else 0.0,
        }

    # 1. dev ---------------------------------------------------------------------------------------
    conditions: dict[str, tuple[np.ndarray, np.ndarray]] = {"orig": (x_tr, y_tr)}
    for spec, a in autos.items():
        if a["x"] is not None:
            conditions[f"orig + auto[{spec}]"] = (np.concatenate([x_tr, a["x"]]), np.concatenate([y_tr, a["labels"]]))
            if args.probe_filter:
                keep = probe_keep(x_tr, y_tr, a["x"], a["labels"], args.C)
                conditions[f"orig + auto[{spec}], probe-filtered"] = (
                    np.concatenate([x_tr, a["x"][keep]]), np.concatenate([y_tr, a["labels"][keep]]))
    conditions["orig + human"] = (np.concatenate([x_tr, x_hu]), np.concatenate([y_tr, y_hu]))
    dev: dict[str, dict[str, object]] = {}
    for name, (x, y) in conditions.items():
        correct = fit_eval(x, y, tests, args.C)
        dev[name] = {t: {"acc": float(c.mean()), "ci95": bootstrap_ci(c)} for t, c in correct.items()}
        dev[name]["n_train"] = int(len(y))
        print(name, {t: round(v["acc"] * 100, 1) for t, v in dev[name].items() if t != "n_train"}, flush=True)

    # 2. cross-validation over the training pairs -------------------------------------------------
    cv: dict[str, dict[str, object]] = {}
    n_pairs: int | str = "?"
    if not args.no_cv:
        pairs = load_pairs(root, "train")
        texts_o = [p[0] for p in pairs]
        y_o = np.array([p[1] for p in pairs])
        x_o, x_h = enc(texts_o), enc([p[2] for p in pairs])
        auto_by_text: dict[str, dict[str, tuple[np.ndarray, int]]] = {}
        for spec, a in autos.items():
            auto_by_text[spec] = {train[i]["Text"]: (a["x"][j], int(a["labels"][j])) for j, i in enumerate(a["idx"])}
        scores: dict[str, dict[str, list[float]]] = {}
        for seed in args.seeds:
            perm = np.random.default_rng(seed).permutation(len(pairs))
            folds = np.array_split(perm, args.folds)
            for f in range(args.folds):
                test = folds[f]
                tr = np.concatenate([folds[j] for j in range(args.folds) if j != f])
                fold_tests = {"orig": (x_o[test], y_o[test]), "human cf": (x_h[test], 1 - y_o[test])}
                variants = {"orig": (x_o[tr], y_o[tr]), "orig + human": (np.concatenate([x_o[tr], x_h[tr]]), np.concatenate([y_o[tr], 1 - y_o[tr]]))}
                for spec, table in auto_by_text.items():
                    got = [table[texts_o[i]] for i in tr if texts_o[i] in table]
                    if got:
                        xa, ya = np.stack([g[0] for g in got]), np.array([g[1] for g in got])
                        variants[f"orig + auto[{spec}]"] = (np.concatenate([x_o[tr], xa]), np.concatenate([y_o[tr], ya]))
                        if args.probe_filter:  # the filter's probe sees this fold's training originals only
                            keep = probe_keep(x_o[tr], y_o[tr], xa, ya, args.C)
                            variants[f"orig + auto[{spec}], probe-filtered"] = (
                                np.concatenate([x_o[tr], xa[keep]]), np.concatenate([y_o[tr], ya[keep]]))
                for name, (x, y) in variants.items():
                    correct = fit_eval(x, y, fold_tests, args.C)
                    for t, c in correct.items():
                        scores.setdefault(name, {}).setdefault(f"{t}@{seed}", []).append(float(c.sum()))
        n = n_pairs = len(pairs)
        for name, per in scores.items():
            out: dict[str, object] = {}
            for t in ("orig", "human cf"):
                accs = [sum(per[f"{t}@{s}"]) / n for s in args.seeds]
                out[t] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "per_seed": accs}
            cv[name] = out
            print("cv", name, {t: round(v["mean"] * 100, 2) for t, v in out.items()}, flush=True)

    order = list(conditions)
    result = {"encoder": args.encoder, "C": args.C, "folds": args.folds, "seeds": args.seeds,
              "strategies": {s: {k: v for k, v in a.items() if k in ("flip_rate", "seconds", "words_changed")} for s, a in autos.items()},
              "dev": dev, "cv": cv}
    lines = [f"Frozen {Path(args.encoder).name if '/' in args.encoder else args.encoder} + logistic regression (C={args.C}); "
             "accuracy in %. dev: orig/dev and new/dev (245 each; [95% bootstrap CI]); "
             f"cv: {args.folds}-fold CV over the {n_pairs} training pairs, "
             f"mean (std) over fold seeds {args.seeds}.", "",
             "| training data | n train | dev: originals | dev: human CF | cv: originals | cv: human CF |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in order:
        d = dev[name]

        def fmt(v):
            return f"{v['acc'] * 100:.1f} [{v['ci95'][0] * 100:.0f}-{v['ci95'][1] * 100:.0f}]"

        c = cv.get(name)
        cvs = ["", ""] if c is None else [f"{c[t]['mean'] * 100:.2f} ({c[t]['std'] * 100:.2f})" for t in ("orig", "human cf")]
        lines.append(f"| {name} | {d['n_train']} | {fmt(d['orig/dev'])} | {fmt(d['new/dev'])} | {cvs[0]} | {cvs[1]} |")
    lines += ["", "| strategy | flipped (train) | words changed (mean) | seconds for 1,707 reviews |", "|---|---:|---:|---:|"]
    for s, a in autos.items():
        lines.append(f"| {s} | {a['flip_rate']:.1%} | {a['words_changed']:.1f} | {a['seconds']:.2f} |")
    save_report(args.out, result, "\n".join(lines))


if __name__ == "__main__":
    main()
