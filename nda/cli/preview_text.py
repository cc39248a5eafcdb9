"""``nda preview`` of texts: a markdown table of texts and their negatives (``--texts``), or CAD reviews with
the automatic counterfactual's edits next to the human ones (``--cad-pairs``)."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import torch

import nda
from nda.base import apply_text
from nda.cli.common import (
    TEXT_OUT_EXTENSIONS,
    CLIError,
    build_negative,
    cell,
    check_out,
    read_utf8,
    write_text,
)
from nda.data.labeled_text import read_counterfactual_pairs, word_diff

__all__ = ["preview_cad", "preview_texts"]


def _read_texts(path: str, labels_column: bool, n: int | None) -> tuple[list[str], list[Any] | None]:
    texts: list[str] = []
    labels: list[Any] = []
    for number, line in enumerate(read_utf8(path, "--texts").splitlines(), start=1):
        if not line.strip():
            continue
        if labels_column:
            label, tab, text = line.partition("\t")
            if not tab:
                raise CLIError(f"--texts {path}:{number}: --labels-column expects 'label<TAB>text' lines, got {line[:60]!r}")
            label = label.strip()
            labels.append(int(label) if label.lstrip("-").isdigit() else label)
            texts.append(text.strip())
        else:
            texts.append(line.strip())
        if n is not None and len(texts) >= n:
            break
    if not texts:
        raise CLIError(f"--texts: {path!r} has no non-empty lines")
    return texts, (labels if labels_column else None)


def preview_texts(args: argparse.Namespace) -> int:
    texts, labels = _read_texts(args.texts, args.labels_column, args.n)  # the input first: the more basic error
    out = check_out(args.out, TEXT_OUT_EXTENSIONS, "a text preview") if args.out else None
    specs = args.nda or nda.available("text")
    lines: list[str] = []
    for spec in specs:
        negative = build_negative(spec, "text")
        generator = torch.Generator().manual_seed(args.seed)
        flips = bool(getattr(negative, "flips_labels", False))
        try:
            result = apply_text(negative, texts, generator=generator, labels=labels, label_map=args.label_map)
        except ValueError as err:
            raise CLIError(f"--nda {spec!r} failed: {err}") from err
        new_labels = result.labels if flips and labels is not None else None
        flipped = result.flipped if flips else None
        header = ["#", "original", "negative"]
        if labels is not None:
            header.append("label")
        if new_labels is not None:
            header.append("new label")
        if flipped is not None:
            header.append("flipped")
        lines += [f"### {spec}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for i, (orig, neg) in enumerate(zip(texts, list(result))):
            row = [str(i), cell(orig, args.max_chars), cell(neg, args.max_chars)]
            if labels is not None:
                row.append(cell(labels[i], 20))
            if new_labels is not None:
                row.append(cell(new_labels[i].item() if isinstance(new_labels, torch.Tensor) else new_labels[i], 20))
            if flipped is not None:
                row.append("yes" if flipped[i] else "no")
            lines.append("| " + " | ".join(row) + " |")
        if flipped is not None:
            lines.append(f"\nflipped {sum(map(bool, flipped))}/{len(texts)}")
        if not all(result.valid):
            lines.append(f"\nusable as negatives (changed{', flipped' if flips else ''}) {sum(result.valid)}/{len(texts)}")
        lines.append("")
    report = "\n".join(lines)
    print(report)
    if out is not None:
        write_text(out, report)
    return 0


# ------------------------------------------------------------------------------------------- CAD pairs
def _cad_file(path: str) -> Path:
    """A CAD paired TSV: the file itself, or in a folder its ``dev_paired.tsv`` (else the first ``*_paired.tsv``).
    The file is read by :func:`nda.data.labeled_text.read_counterfactual_pairs` (its rule: the first row of a
    batch is the original)."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"--cad-pairs: {path!r} does not exist")
    if p.is_file():
        return p
    found = sorted(p.glob("*_paired.tsv"))
    if not found:
        raise CLIError(f"--cad-pairs: no *_paired.tsv file in folder {path!r} (CAD: sentiment/combined/paired)")
    return next((f for f in found if f.name == "dev_paired.tsv"), found[0])


def preview_cad(args: argparse.Namespace) -> int:
    out = check_out(args.out, TEXT_OUT_EXTENSIONS, "a text preview") if args.out else None
    specs = args.nda or ["counterfactual"]
    negatives = [(spec, build_negative(spec, "text")) for spec in specs]
    file = _cad_file(args.cad_pairs)
    try:
        pairs = read_counterfactual_pairs(file)
    except ValueError as err:
        raise CLIError(f"--cad-pairs: {err}") from err
    if not pairs:
        raise CLIError(f"--cad-pairs {str(file)!r}: no batch with an original and a counterfactual (two rows or more)")
    if len(pairs) > args.n:
        pairs = [pairs[i] for i in sorted(random.Random(args.seed).sample(range(len(pairs)), args.n))]
    originals, labels = [p.original for p in pairs], [p.label for p in pairs]
    results = []
    for spec, negative in negatives:
        try:
            results.append(apply_text(negative, originals, generator=torch.Generator().manual_seed(args.seed),
                                      labels=labels, label_map=args.label_map))
        except ValueError as err:
            raise CLIError(f"--nda {spec!r} failed: {err}") from err
    lines = [f"# {len(pairs)} CAD reviews: human counterfactual vs automatic ({', '.join(specs)})", "",
             "Edits as `{original words -> new words}` with 3 words of context.", ""]
    stats = {spec: [0, 0, 0, 0] for spec in specs}  # flipped, words changed, shared positions, human positions
    human_words = 0
    for i, pair in enumerate(pairs):
        original = pair.original
        h_diff, h_n, h_pos = word_diff(original, pair.counterfactual)
        human_words += h_n
        lines += [f"## {i + 1}. batch {pair.batch_id} ({pair.label})", "", f"**original**: {original}", "",
                  f"- **human** ({h_n} words): {h_diff}"]
        for (spec, negative), res in zip(negatives, results):
            flips = bool(getattr(negative, "flips_labels", False))
            if res.valid[i]:
                a_diff, a_n, a_pos = word_diff(original, res[i])
                new_label = f" -> {res.labels[i]}" if flips and res.labels is not None else ""
                lines.append(f"- **{spec}** ({a_n} words{new_label}): {a_diff}")
                st = stats[spec]
                st[0] += bool(res.flipped[i]) if flips else 1
                st[1] += a_n
                st[2] += len(a_pos & h_pos)
                st[3] += len(h_pos)
            else:
                lines.append(f"- **{spec}**: no counterfactual (no rule applies; not flipped)")
        lines.append("")
    lines += ["| edits | flipped | words changed (mean) | human-edited words also edited |", "|---|---:|---:|---:|",
              f"| human (CAD) | {len(pairs)}/{len(pairs)} | {human_words / len(pairs):.1f} | 100% |"]
    for spec, st in stats.items():
        share = f"{st[2] / st[3]:.0%}" if st[3] else "-"
        lines.append(f"| {spec} | {st[0]}/{len(pairs)} | {st[1] / max(st[0], 1):.1f} | {share} |")
    report = "\n".join(lines)
    print(report)
    if out is not None:
        write_text(out, report)
    return 0
