"""A sentence encoder with a linear head: the classifier ``tasks/classify.py --mode finetune`` trains.

Why a module of our own: the head sits on the same pooled embedding the contrastive jobs train, so a
classifier can start from any encoder this project produces, and the saved folder keeps the encoder in
sentence-transformers layout (``<folder>/encoder``) beside the head (``head.safetensors`` + ``classifier.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from nda.models.sentence import SentenceEncoder

__all__ = ["TextClassifier"]


class TextClassifier(nn.Module):
    """``forward(input_ids, attention_mask, ...) -> (B, num_classes)`` logits: encoder pooling + linear head.

    >>> from nda.models.sentence import tiny_random_encoder
    >>> clf = TextClassifier(tiny_random_encoder(), num_classes=2)
    >>> clf.predict(["a good film", "a bad film"]).shape
    torch.Size([2])
    """

    def __init__(self, encoder: SentenceEncoder, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.embedding_dim, num_classes)
        self.train(encoder.training)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **features: torch.Tensor) -> torch.Tensor:
        emb = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **features)
        return self.head(self.dropout(emb))

    def tokenize(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        return self.encoder.tokenize(texts, device=device)

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Predicted classes ``(N,)`` on the CPU, in eval mode (the mode is restored after)."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [self(**self.tokenize(list(texts[i:i + batch_size]), device=device)).argmax(dim=1).cpu()
               for i in range(0, len(texts), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        out = Path(directory)
        self.encoder.save_pretrained(out / "encoder")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(out / "head.safetensors"))
        (out / "classifier.json").write_text(json.dumps({"num_classes": self.num_classes,
                                                         "dropout": self.dropout.p}, indent=2))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> TextClassifier:
        from safetensors.torch import load_file

        folder = Path(directory)
        if not (folder / "classifier.json").is_file():
            raise FileNotFoundError(f"{folder} is not a saved TextClassifier (no classifier.json)")
        info = json.loads((folder / "classifier.json").read_text())
        model = cls(SentenceEncoder.from_pretrained(str(folder / "encoder")), int(info["num_classes"]),
                    float(info.get("dropout", 0.1)))
        model.head.load_state_dict(load_file(str(folder / "head.safetensors")))
        return model.eval()
