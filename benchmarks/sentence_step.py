"""SimCSE training-step time with NDA negatives over without (K=1), measured side by side in one run.

One step = make the NDA negatives + tokenise + one forward over [anchors; positives; negatives] + loss +
backward + AdamW step -- exactly what ``tasks/sentence.py`` does per micro-batch (``nda.models.simcse``
``build_contrastive_batch`` + ``contrastive_step`` with ``nda.objectives.SoftNegativeLoss``), for the NDA
objectives of ``--nda-loss``: weighted columns (w = 1 and a small w) and SNCSE's margin. Configurations are
interleaved round by round (the same batches for all), and the median is reported, so machine load hits
them alike. With K=1 the encoder sees 3B rows instead of 2B, so ~1.5x is the floor for any NDA;
target <= 1.6x. (``--nda-every N`` costs 1 + (ratio - 1) / N on average: no negatives on the other steps.)

    python benchmarks/sentence_step.py                        # all-MiniLM-L6-v2 on CPU
    python benchmarks/sentence_step.py --device cuda --batch-size 64 --rounds 30
    python benchmarks/sentence_step.py --sup --out benchmarks/results/sentence_step_sup.json   # supervised rows

``--sup`` times the supervised recipe's steps instead (``configs/sentence_negation_aware.json``): (anchor, positive,
hard negative) rows with the symmetric loss, then NDA negatives of the positive, then double-flip extra
positives; ratios are against the first (pairs + contradictions, no NDA).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nda.reporting import save_report

SENTENCES = [
    "A man is playing a guitar on the stage.", "The dog is running through the park.",
    "Two women are eating food at a small table.", "A boy is riding a red bike down the hill.",
    "The police said two men were arrested on Monday.", "She is not walking to the house tonight.",
    "A cat sits quietly on the old car.", "The government said prices will rise next year.",
    "A girl is cutting an onion in the kitchen.", "People are walking down the busy street.",
    "The market fell by two percent after the report.", "A horse runs across a green field.",
    "A woman is playing the piano for her friends.", "Three men are playing chess in the park.",
    "A plane is taking off from the airport.", "The child is sleeping in a small bed.",
]

CONFIGS = [  # (label, --nda spec, level, SoftNegativeLoss options = --nda-loss / --nda-weight / --nda-lambda)
    ("none (plain SimCSE)", "none", "string", {}),
    ("token_shuffle, column w=1", "token_shuffle", "string", {}),
    ("token_shuffle, column w=0.1", "token_shuffle", "string", {"negative_weight": 0.1}),
    ("token_shuffle, margin", "token_shuffle", "string", {"mode": "margin", "margin_weight": 0.1}),
    ("token_shuffle (token level), column w=1", "token_shuffle", "token", {}),
    ("span_stitch, column w=1", "span_stitch", "string", {}),
    ("counterfactual, column w=1", "counterfactual", "string", {}),
    ("counterfactual, column w=0.1", "counterfactual", "string", {"negative_weight": 0.1}),
    ("counterfactual, margin", "counterfactual", "string", {"mode": "margin", "margin_weight": 0.1}),
    ("token_shuffle|counterfactual, column w=1", "token_shuffle|counterfactual", "string", {}),
]
DOUBLE_FLIP = "counterfactual:negation=False,antonym_scope=predicate>counterfactual:antonyms=False"
SUP_CONFIGS = [  # (label, --nda, level, loss options, batch options: --nda-source / --nda-positive)
    ("sup pairs + contradictions, symmetric", "none", "string", {}, {}),
    ("+ counterfactual of the positive, margin (the recipe)", "counterfactual", "string",
     {"mode": "margin", "margin_weight": 0.1}, {"nda_source": "positive"}),
    ("+ counterfactual of the positive, column w=1", "counterfactual", "string", {}, {"nda_source": "positive"}),
    ("+ counterfactual of both sides, column w=1", "counterfactual", "string", {}, {"nda_source": "both"}),
    ("+ cf of the positive + double-flip positives", "counterfactual", "string", {},
     {"nda_source": "positive", "paraphrase": DOUBLE_FLIP}),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", help="'default' (all-MiniLM-L6-v2), 'tiny-random', or a name/path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--sup", action="store_true", help="time supervised rows (the negation-aware recipe)")
    parser.add_argument("--out", default="benchmarks/results/sentence_step.json")
    args = parser.parse_args(argv)
    configs = SUP_CONFIGS if args.sup else [(*c, {}) for c in CONFIGS]

    import nda
    from nda.models.sentence import SentenceEncoder
    from nda.models.simcse import build_contrastive_batch, contrastive_step
    from nda.objectives import SoftNegativeLoss

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    encoder = SentenceEncoder.from_pretrained(args.model, max_length=args.max_length).to(device).train()
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-5)
    criteria = {label: SoftNegativeLoss(temperature=0.05, **options) for label, _, _, options, _ in configs}
    negatives = {label: nda.build(spec, tokenizer=encoder.tokenizer) if level == "token" else nda.build(spec)
                 for label, spec, level, _, _ in configs}
    batch_options = {label: {k: nda.build(v) if k == "paraphrase" else v for k, v in extra.items()}
                     for label, *_, extra in configs}
    reps = -(-args.batch_size // len(SENTENCES))
    pool = (SENTENCES * reps)[: args.batch_size]
    # supervised rows: a lower-cased copy as the positive, the next sentence as the hard negative (timing only)
    sup = {"positives": [t.lower() for t in pool], "hard_negatives": pool[1:] + pool[:1]} if args.sup else {}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(label: str, level: str, seed: int) -> float:
        sync()
        start = time.perf_counter()
        g = torch.Generator().manual_seed(seed)
        batch = build_contrastive_batch(encoder, pool, negative=negatives[label], k=1, level=level, generator=g,
                                        device=device, **sup, **batch_options[label])
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = contrastive_step(encoder, batch, criteria[label], symmetric=args.sup, extra_weight=0.5)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {label: [] for label, *_ in configs}
    for r in range(args.warmup + args.rounds):
        shift = r % len(configs)  # rotate the order every round: no configuration always runs first
        for label, _, level, *_ in configs[shift:] + configs[:shift]:
            t = step(label, level, r)
            if r >= args.warmup:
                times[label].append(t)
    none = times[configs[0][0]]
    # the ratio of each round's step to the same round's plain step, then the median: a load that drifts over
    # the run (a shared machine) moves both alike; the ratio of medians is reported beside it
    rows = [{"config": label, "level": level, "objective": {"temperature": 0.05, **options},
             "median_s": statistics.median(times[label]),
             "ratio_vs_none": statistics.median(t / n for t, n in zip(times[label], none)),
             "ratio_of_medians": statistics.median(times[label]) / statistics.median(none), "times_s": times[label]}
            for label, _, level, options, _ in configs]
    meta = {"model": args.model, "supervised": args.sup, "device": str(device), "batch_size": args.batch_size, "k": 1,
            "max_length": args.max_length, "rounds": args.rounds, "threads": args.threads,
            "mixed_precision": args.mixed_precision, "torch": torch.__version__, "target_ratio": 1.6,
            "ratio": "median over rounds of (step time / plain SimCSE step time of the same round)"}
    lines = [f"SimCSE step time, {args.model} on {device}, batch {args.batch_size}, K=1, max_length {args.max_length}, "
             f"{args.rounds} interleaved rounds, {args.threads} thread(s); x vs none = median over rounds of the "
             "per-round ratio (target: <= 1.6x)", "",
             "| negatives, objective | level | median step (ms) | x vs none | ratio of medians |", "|---|---|---|---|---|"]
    lines += [f"| {r['config'].replace('|', chr(92) + '|')} | {r['level']} | {1000 * r['median_s']:.1f} | "
              f"{r['ratio_vs_none']:.2f} | {r['ratio_of_medians']:.2f} |" for r in rows]  # a literal | splits a cell
    save_report(args.out, {"meta": meta, "rows": rows}, "\n".join(lines))
    return {"meta": meta, "rows": rows}


if __name__ == "__main__":
    main()
