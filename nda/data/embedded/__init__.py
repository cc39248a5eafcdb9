"""Small real data that ships inside the package, so demos and the tour run offline on any fresh install.

Why here and not in a data folder beside the repo: a user who ``pip install``\\ s nda has neither
``../shared/data`` nor a hub. Each set keeps its licence and a provenance line (``<set>/README.txt``).

- ``cad_imdb/``: a slice of the Counterfactually-Augmented Data of Kaushik et al. (ICLR 2020; Apache-2.0),
  CAD's own layout: 400 IMDb training reviews (200 per class, seeded) with their human counterfactuals, and
  CAD's whole dev split (245 originals, 245 human counterfactuals) for evaluation -- never trained on.

>>> s = cad_imdb_slice()
>>> s.train.name, s.dev_counterfactual.parent.name
('train.tsv', 'new')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EMBEDDED_DIR", "CadSlice", "cad_imdb_slice"]

EMBEDDED_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CadSlice:
    """Paths of the embedded CAD IMDb slice; every file reads with :func:`nda.data.labeled_text.load_labeled_texts`
    (``train_paired`` with :func:`~nda.data.labeled_text.load_counterfactual_pairs`)."""

    root: Path
    train: Path  # originals used for training (orig/train.tsv)
    train_paired: Path  # the same originals and their human counterfactuals, paired by batch_id
    dev: Path  # held-out originals (CAD orig/dev.tsv, verbatim)
    dev_counterfactual: Path  # their human counterfactuals, flipped labels (CAD new/dev.tsv, verbatim)


def cad_imdb_slice() -> CadSlice:
    """The embedded CAD slice, or a ``FileNotFoundError`` naming the missing file (an install without
    package data)."""
    root = EMBEDDED_DIR / "cad_imdb"
    found = CadSlice(root, root / "orig" / "train.tsv", root / "combined" / "paired" / "train_paired.tsv",
                     root / "orig" / "dev.tsv", root / "new" / "dev.tsv")
    for path in (found.train, found.train_paired, found.dev, found.dev_counterfactual):
        if not path.is_file():
            raise FileNotFoundError(f"the embedded CAD slice lacks {path} (an nda install without its package "
                                    "data? reinstall with `pip install -e .`)")
    return found
