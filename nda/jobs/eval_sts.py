"""STS-B dev/test only: Spearman x100 of cosine similarity. Superseded by ``tasks/eval_sentence.py`` (the full
suite: STS12-16, STS-B, SICK-R, negation, word order, CAD); kept as the quick check of a ``tasks/sentence.py``
run, computed by the same code (``nda.metrics.sts``, ``nda.metrics.sentence_encoders``).

    python tasks/eval_sts.py --model runs/sentence --sts-data ../shared/data/text/stsbenchmark
    python tasks/eval_sts.py --model sentence-transformers/all-MiniLM-L6-v2 --sts-data sentence-transformers/stsb

``--model``: a run folder of ``tasks/sentence.py``, one of its checkpoint folders, a saved encoder folder, a
hub name, ``default`` (all-MiniLM-L6-v2) or ``tiny-random``, loaded as the training job evaluates it
(``SentenceEncoder``, so the numbers equal the run's own). Prints a table and writes ``results.json``
(``eval_sts.json`` inside a run folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from nda.files import atomic_write_json
from nda.metrics.sentence_encoders import load_sentence_encoder as load_encoder
from nda.run import cli, parse_config


@dataclass
class EvalStsConfig:
    """Evaluate a sentence encoder on STS-B (Spearman x100 of cosine similarity)."""

    model: str = field(default="default", metadata={"help": "run folder, checkpoint folder, model folder, hub name, 'default' or 'tiny-random'"})
    sts_data: str = field(default="sentence-transformers/stsb", metadata={"help": "folder with sts-dev.csv/sts-test.csv, a file, or an HF dataset name"})
    splits: str = field(default="dev,test", metadata={"help": "comma-separated splits"})
    pooling: str = field(default="auto", metadata={"help": "cls | mean | auto (from the model folder)"})
    max_length: int | None = field(default=None, metadata={"help": "max tokens (default: the model folder's)"})
    batch_size: int = field(default=128, metadata={"help": "encoding batch size"})
    device: str = field(default="auto", metadata={"help": "cpu | cuda | auto"})
    out_dir: str | None = field(default=None, metadata={"help": "where results.json goes (default: the run folder, else runs/eval_sts)"})


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(EvalStsConfig, argv)
    from nda.metrics.sts import load_sts, sts_spearman

    splits = [s for s in cfg.splits.split(",") if s]
    data = {s: load_sts(cfg.sts_data, s) for s in splits}
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    encoder, kind = load_encoder(cfg.model, None if cfg.pooling == "auto" else cfg.pooling, cfg.max_length)
    encoder.to(device).eval()
    scores = {s: sts_spearman(encoder, d, batch_size=cfg.batch_size, name=cfg.model) for s, d in data.items()}

    print(f"\n| model | pooling | {' | '.join(f'STS-B {s} Spearman x100' for s in splits)} |")
    print(f"|---|---|{'---|' * len(splits)}")
    print(f"| {cfg.model} | {encoder.pooling} | {' | '.join(f'{scores[s]:.2f}' for s in splits)} |\n")

    results = {
        "model": cfg.model,
        "model_kind": kind,
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        **{f"sts_{s}_spearman": v for s, v in scores.items()},
        "pairs": {s: len(d) for s, d in data.items()},
        "eval": {"data": {s: d.source for s, d in data.items()},
                 "metric": "Spearman x100 of cosine similarity vs gold scores (STS-B)"},
    }
    out_dir = Path(cfg.out_dir) if cfg.out_dir else (Path(cfg.model) if kind == "run" else Path("runs/eval_sts"))
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "results.json" if kind != "run" else "eval_sts.json"
    atomic_write_json(out_dir / name, results, indent=2)
    print(f"wrote {out_dir / name}")
    return results


def run(prog: str = "nda-eval-sts") -> None:
    """The command line: ``nda-eval-sts``, ``python -m nda.jobs.eval_sts``, ``python tasks/eval_sts.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
