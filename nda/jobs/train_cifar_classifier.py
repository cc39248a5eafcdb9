"""Train the small CIFAR-10 classifier whose features are the project's offline FID/KID feature space.

    python tasks/train_cifar_classifier.py --data /path/to/cifar10-jpg.tar.gz --epochs 20
    accelerate launch tasks/train_cifar_classifier.py --data ... --mixed-precision bf16

Writes ``nda/models/weights/cifar10_classifier.safetensors`` (float16, < 5 MB) and a JSON beside it with
the measured test accuracy, the data it was trained on and the weights' SHA-256 (the extractor's name
carries its first 8 hex digits). Random-crop + flip augmentation done batched on the device, SGD with
Nesterov momentum, one-cycle learning rate, label smoothing.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from nda.data.images import load_images
from nda.files import atomic_write_json, sha256_file
from nda.models.cifar_classifier import CIFAR_MEAN, CIFAR_STD, CifarClassifier
from nda.run import batch_indices, cli, parse_config, step_generator


@dataclass
class ClassifierConfig:
    """Train the CIFAR-10 feature-extractor classifier."""

    data: str = field(default="/work/shared/data/cifar10/cifar10-jpg.tar.gz", metadata={"help": "CIFAR-10 source for load_images"})
    cache_dir: str | None = field(default=None, metadata={"help": "decoded-array cache (default ~/.cache/nda)"})
    width: int = 32
    epochs: int = 20
    batch_size: int = 512
    lr: float = 0.2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    seed: int = 0
    out: str = field(default=str(Path(__file__).resolve().parents[1] / "models/weights/cifar10_classifier.safetensors"))
    mixed_precision: str = "no"
    threads: int = 0


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batched random crop (pad 4, reflect) and horizontal flip of float images ``(B, 3, 32, 32)``."""
    b, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx = torch.randint(0, 9, (b,), generator=generator, device=generator.device).to(x.device)
    dy = torch.randint(0, 9, (b,), generator=generator, device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (B, W)
    flip = torch.rand(b, generator=generator, device=generator.device).to(x.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(b, x.shape[1], h, padded.shape[-1])
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(b, x.shape[1], h, w)
    return out.gather(3, idx_c)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(ClassifierConfig, argv)
    from accelerate import Accelerator

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = Accelerator(mixed_precision=cfg.mixed_precision)
    torch.manual_seed(cfg.seed)
    if acc.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # data: uint8 arrays held on the device, normalised per batch
    train = load_images(cfg.data, "train", image_size=32, channels=3, cache_dir=cfg.cache_dir)
    test = load_images(cfg.data, "test", image_size=32, channels=3, cache_dir=cfg.cache_dir)
    acc.print(f"train {len(train)} / test {len(test)} images from {cfg.data}")
    mean = torch.tensor(CIFAR_MEAN, device=acc.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=acc.device).view(1, 3, 1, 1)
    x_train, y_train = train.images.to(acc.device), train.labels.to(acc.device)

    def norm(u8: torch.Tensor) -> torch.Tensor:
        return (u8.float() / 255.0 - mean) / std

    model = CifarClassifier(width=cfg.width)
    steps_per_epoch = len(train) // (cfg.batch_size * acc.num_processes)
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.25)
    model, opt = acc.prepare(model, opt)

    from tqdm.auto import tqdm

    start = time.time()
    bar = tqdm(range(total), disable=not acc.is_local_main_process, desc="classifier")
    model.train()
    for step in bar:
        idx = batch_indices(step, len(train), cfg.batch_size, cfg.seed, acc.process_index, acc.num_processes).to(acc.device)
        # crops and flips of step `step` on this rank: a pure function of (seed, step, rank), as in nda.run
        x = augment(norm(x_train[idx]), step_generator(cfg.seed, step, acc.process_index, "augment", acc.device))
        loss = F.cross_entropy(model(x), y_train[idx], label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=step // steps_per_epoch)

    # honest test accuracy on the held-out 10k (no augmentation, no test-time tricks)
    net = acc.unwrap_model(model).eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test), 1000):
            xb = norm(test.images[i : i + 1000].to(acc.device))
            correct += int((net(xb).argmax(1).cpu() == test.labels[i : i + 1000]).sum())
    accuracy = correct / len(test)
    result = {"test_accuracy": accuracy, "train_seconds": round(time.time() - start, 1)}
    if acc.is_main_process:
        from safetensors.torch import save_file

        out = Path(cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in net.state_dict().items()
                 if v.dtype.is_floating_point}
        save_file(state, str(out))
        digest = sha256_file(out)
        # float16 storage: re-measure accuracy with the stored weights so the recorded number is theirs
        reloaded = CifarClassifier(width=cfg.width).to(acc.device)
        reloaded.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        reloaded.load_state_dict({k: v for k, v in net.state_dict().items() if not v.dtype.is_floating_point}, strict=False)
        reloaded.eval()
        with torch.no_grad():
            correct16 = sum(
                int((reloaded(norm(test.images[i : i + 1000].to(acc.device))).argmax(1).cpu() == test.labels[i : i + 1000]).sum())
                for i in range(0, len(test), 1000)
            )
        meta = {
            "architecture": "nda.models.cifar_classifier.CifarClassifier",
            "width": cfg.width,
            "num_classes": 10,
            "feature_dim": net.feature_dim,
            "test_accuracy": correct16 / len(test),
            "test_accuracy_float32": accuracy,
            "test_set": f"{test.name} ({len(test)} images; CIFAR-10 test, JPEG re-encoded)",
            "train_set": f"{train.name} ({len(train)} images; JPEG re-encoded)",
            "config": dataclasses.asdict(cfg),
            "train_seconds": result["train_seconds"],
            "device": str(acc.device) + (f" ({torch.cuda.get_device_name()})" if acc.device.type == "cuda" else ""),
            "bytes": out.stat().st_size,
            "sha256": digest,
        }
        atomic_write_json(out.with_suffix(".json"), meta, indent=2)
        result.update(meta)
        acc.print(f"test accuracy {meta['test_accuracy']:.4f} (float16 weights; float32 {accuracy:.4f}); "
                  f"wrote {out} ({meta['bytes'] / 1e6:.2f} MB) and {out.with_suffix('.json')}")
    return result


def run(prog: str = "nda-train-cifar-classifier") -> None:
    """The command line: ``nda-train-cifar-classifier``, ``python -m nda.jobs.train_cifar_classifier``, ``python tasks/train_cifar_classifier.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
