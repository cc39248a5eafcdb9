"""How hard does each NDA objective push the encoder? Gradient norms on all-MiniLM-L6-v2 over STS-B train batches.

For each negative: the gradient norm (over all encoder weights) of plain InfoNCE, of the margin term at lambda = 1,
and the *extra* gradient that NDA columns of weight 1 / 0.1 add to InfoNCE -- so ``--nda-lambda`` can be chosen on
the scale of the columns instead of copying SNCSE's 1e-3 (tuned for BERT-base from scratch, whose InfoNCE is far
from solved; a sentence-trained MiniLM solves dropout-SimCSE almost perfectly, so its InfoNCE gradient is tiny).
Also: the distribution of d = cos(q, neg) - cos(q, pos) against the band [-beta, -alpha].

    python scripts/sentence_lambda_scale.py [BATCH] [ROUNDS]      # CPU, ~1 min per round
"""
import statistics
import sys

import torch

import nda
from nda.metrics.sts import load_sts, sts_sentences
from nda.models.sentence import SentenceEncoder
from nda.models.simcse import build_contrastive_batch
from nda.objectives import ContrastiveNegativeLoss
from nda.objectives.margin import bidirectional_margin_loss, margin_delta

torch.set_num_threads(1)
B, ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 32, int(sys.argv[2]) if len(sys.argv) > 2 else 3
sents = sts_sentences(load_sts(sys.argv[3] if len(sys.argv) > 3 else "../shared/data/text/stsbenchmark/sts-train.csv"))
enc = SentenceEncoder.from_pretrained("default", max_length=32).train()
params = [p for p in enc.parameters() if p.requires_grad]

def gnorm(loss):
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([g.flatten() for g in grads if g is not None])

for spec in ("token_shuffle", "counterfactual"):
    neg = nda.build(spec)
    stats = {k: [] for k in ("info", "margin1", "col1_extra", "col01_extra", "d_mean", "frac_close", "frac_far", "valid")}
    for r in range(ROUNDS):
        g = torch.Generator().manual_seed(r)
        idx = torch.randperm(len(sents), generator=g)[:B].tolist()
        batch = build_contrastive_batch(enc, [sents[i] for i in idx], negative=neg, k=1, generator=g)
        torch.manual_seed(r)
        emb = enc(**batch.features)
        q, p, n = emb[:B], emb[B:2 * B], emb[2 * B:].reshape(1, B, -1).transpose(0, 1)
        m = batch.negative_mask
        info = ContrastiveNegativeLoss(0.05, in_batch=True)(q, p).loss
        g_info = gnorm(info)
        g_margin = gnorm(bidirectional_margin_loss(q, p, n, m, 0.1, 0.3))
        g_col1 = gnorm(ContrastiveNegativeLoss(0.05, in_batch=True)(q, p, n, negative_mask=m).loss)
        g_col01 = gnorm(ContrastiveNegativeLoss(0.05, in_batch=True, negative_weight=0.1)(q, p, n, negative_mask=m).loss)
        d = margin_delta(q, p, n)[m].detach()
        stats["info"].append(g_info.norm().item())
        stats["margin1"].append(g_margin.norm().item())
        stats["col1_extra"].append((g_col1 - g_info).norm().item())
        stats["col01_extra"].append((g_col01 - g_info).norm().item())
        stats["d_mean"].append(d.mean().item())
        stats["frac_close"].append((d > -0.1).float().mean().item())
        stats["frac_far"].append((d < -0.3).float().mean().item())
        stats["valid"].append(m.float().mean().item())
    s = {k: statistics.mean(v) for k, v in stats.items()}
    print(f"{spec}: |grad InfoNCE| {s['info']:.3f}; |grad margin (lambda=1)| {s['margin1']:.3f}; extra |grad| of NDA "
          f"columns w=1 {s['col1_extra']:.3f}, w=0.1 {s['col01_extra']:.3f}; d=cos(q,neg)-cos(q,pos) mean {s['d_mean']:.3f}, "
          f"{100*s['frac_close']:.0f}% above -alpha (pushed away), {100*s['frac_far']:.0f}% below -beta (pulled closer); "
          f"usable negatives {100*s['valid']:.0f}%; lambda matching w=1: {s['col1_extra']/max(s['margin1'],1e-12):.2f}, "
          f"w=0.1: {s['col01_extra']/max(s['margin1'],1e-12):.2f}")
