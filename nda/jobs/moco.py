"""MoCo-v2 with NDA negatives: ``accelerate launch tasks/moco.py [--flags]`` (or ``python tasks/moco.py``).

Each anchor ``i`` is contrasted against its positive key (another MoCo-v2 view of the same image), ``K``
negatives made from its own image by NDA (``--nda jigsaw --nda-k K``, encoded by the momentum key encoder
in the same batched forward as the positive keys) and the queue of past keys::

    logits_i = [q_i . k_i | q_i . n_i1 ... q_i . n_iK | q_i . queue] / T,  label 0

The step is :func:`nda.models.moco_step.moco_step` (the benchmark times the same code). Keys are gathered
from all processes before they enter the queue (identical queue on every rank); batch-norm leakage is
handled by shuffle-BN (default), SyncBN or split BN; the queue and its pointer are model buffers, so
checkpoints hold them. The run skeleton (:mod:`nda.run`) makes data order and every draw a pure function of
``(seed, step, rank)``: a resumed run replays exactly what an uninterrupted one would have done.

Examples::

    python tasks/moco.py --arch tiny --steps 200 --queue-size 1024 --batch-size 64        # digits, CPU
    accelerate launch tasks/moco.py --data ../shared/data/cifar10/cifar10-jpg.tar.gz \\
        --nda jigsaw:grid=2 --nda-k 1 --steps 20000 --batch-size 256 --mixed-precision bf16
    python tasks/moco.py --out-dir runs/moco --resume            # continue from the latest checkpoint
    # two CPU processes (gloo): accelerate 1.15's `launch --cpu --num_processes 2` starts ONE process;
    # torchrun through --multi_gpu with the task's --cpu flag starts two:
    accelerate launch --multi_gpu --num_processes 2 tasks/moco.py --cpu true --arch tiny --queue-size 1024

Outputs in ``--out-dir``: ``config.json``, ``metrics.csv`` (+ ``--report-to`` trackers), ``checkpoints/``, ``final/``
(``model.safetensors`` + ``model.json``: rebuilt by ``nda.run.load_model`` / ``tasks/eval_repr.py``),
``results.json``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import torch

import nda
from nda.distributed import concat_all_gather
from nda.models.moco import BN_MODES, MoCo, available_archs, check_queue_config
from nda.models.moco_step import NDA_SOURCES, STAT_NAMES, enqueue_keys, moco_step, step_stats
from nda.objectives.contrastive import ContrastiveNegativeLoss
from nda.reporting import plot_metrics
from nda.run import Run, RunConfig, cli, data_fingerprint, make_accelerator, parse_config, save_model
from nda.run.config import check_choice, check_finite, check_non_negative, check_positive
from nda.run.schedule import MicroSchedule, set_lr, warmup_lr
from nda.vision.augment import MoCoV2Augment

# loss_plot.png: the InfoNCE loss; the instance-discrimination accuracy and kNN monitor; the mean cosine
# similarities of the query to its positive, its NDA negatives and the queue
PLOT_COLUMNS = {"loss": ("loss",), "accuracy": ("instance_acc", "knn_top1"),
                "mean cosine similarity": ("sim_positive", "sim_nda", "sim_queue")}


@dataclass
class MoCoConfig(RunConfig):
    """MoCo-v2 (+ NDA negatives) pre-training, with a kNN monitor and a final linear probe."""

    out_dir: str = field(default="runs/moco", metadata={"help": "the run folder (one run per folder)"})
    steps: int = field(default=2000, metadata={"help": "optimizer steps (the cosine schedule ends here)"})
    # data
    data: str = field(default="digits", metadata={"help": "'digits' (embedded), an image folder, a .tar.gz of one, or hf:<name>"})
    image_size: int | None = field(default=None, metadata={"help": "resize to this side (default: source size; digits: 32)"})
    channels: int | None = field(default=None, metadata={"help": "1 or 3 (default: the source's)"})
    train_limit: int | None = field(default=None, metadata={"help": "use a fixed random subset of this many training images"})
    test_limit: int | None = field(default=None, metadata={"help": "evaluate on a fixed random subset of the test split"})
    cache_dir: str | None = field(default=None, metadata={"help": "decoded-array cache (default $NDA_CACHE or ~/.cache/nda)"})
    # model
    arch: str = field(default="resnet18", metadata={"help": "'tiny' or a torchvision ResNet name (resnet18, resnet50, ...)"})
    cifar_stem: bool = field(default=True, metadata={"help": "3x3 stride-1 first conv, no max-pool (small images)"})
    dim: int = field(default=128, metadata={"help": "embedding size"})
    hidden_dim: int | None = field(default=None, metadata={"help": "MLP head width (default: backbone feature width)"})
    queue_size: int = field(default=4096, metadata={"help": "keys in the queue; a multiple of the keys enqueued per step"})
    momentum: float = field(default=0.99, metadata={"help": "key-encoder EMA coefficient m"})
    temperature: float = field(default=0.2, metadata={"help": "InfoNCE temperature (MoCo-v2: 0.2)"})
    bn: str = field(default="shuffle", metadata={"help": "batch-norm leakage fix: shuffle | sync | none"})
    bn_splits: int = field(default=1, metadata={"help": "BN groups per batch (e.g. 8 on one GPU, with --bn shuffle)"})
    channels_last: bool = field(default=True, metadata={"help": "channels-last tensors on CUDA (not with --bn-splits > 1)"})
    # NDA
    nda: str = field(default="none", metadata={"help": "image negative spec for nda.build (e.g. jigsaw:grid=2, 'jigsaw|stitch') or none"})
    nda_k: int = field(default=1, metadata={"help": "NDA negatives per anchor (used when --nda is set)"})
    nda_to_queue: bool = field(default=False, metadata={"help": "also enqueue the NDA keys"})
    nda_source: str = field(default="view", metadata={"help": "'view': NDA of the augmented key view; 'image': NDA of the raw image, then augmented"})
    # optimisation
    batch_size: int = field(default=256, metadata={"help": "images per process per micro-step"})
    lr: float = field(default=0.06, metadata={"help": "SGD learning rate (MoCo CIFAR: 0.06 for a batch of 512)"})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay"})
    sgd_momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps before the cosine decay"})
    # evaluation (may change on --resume)
    knn_every: int = field(default=0, metadata={"help": "kNN monitor every N steps (0: off)"})
    knn_k: int = field(default=200, metadata={"help": "kNN neighbours"})
    knn_temperature: float = field(default=0.1, metadata={"help": "kNN vote temperature"})
    monitor_limit: int | None = field(default=10000, metadata={"help": "training images in the kNN monitor's bank"})
    eval_batch_size: int = field(default=512, metadata={"help": "feature-extraction batch"})
    probe_epochs: int = field(default=200, metadata={"help": "linear probe: L-BFGS iterations (or epochs with --probe-batch-size)"})
    probe_batch_size: int | None = field(default=None, metadata={"help": "linear probe mini-batch (default: full-batch L-BFGS)"})
    final_eval: bool = field(default=True, metadata={"help": "kNN + linear probe on the test split at the end"})

    # the cosine schedule ends at --steps: a resumed run with other --steps would follow another schedule
    resume_may_change = (RunConfig.resume_may_change - {"steps"}) | {
        "cache_dir", "test_limit", "knn_every", "knn_k", "knn_temperature", "monitor_limit", "eval_batch_size",
        "probe_epochs", "probe_batch_size", "final_eval"}


def validate(cfg: MoCoConfig) -> MoCoConfig:
    """Every flag checked before anything is loaded or written, the --nda spec by building it (the queue against
    the world: :func:`check_world`)."""
    cfg.check_run_fields()
    check_positive(cfg, "batch_size", "dim", "queue_size", "bn_splits", "knn_k", "eval_batch_size", "probe_epochs")
    check_non_negative(cfg, "knn_every", "warmup_steps", "nda_k", "weight_decay")
    check_finite(cfg, "lr", "momentum", "temperature", "sgd_momentum", "knn_temperature")
    for name in ("image_size", "train_limit", "test_limit", "monitor_limit", "hidden_dim", "probe_batch_size"):
        if getattr(cfg, name) is not None:
            check_positive(cfg, name)
    check_choice(cfg, "channels", (None, 1, 3))
    check_choice(cfg, "arch", available_archs())
    check_choice(cfg, "bn", BN_MODES)
    check_choice(cfg, "nda_source", NDA_SOURCES)
    if cfg.bn_splits > 1 and (cfg.batch_size % cfg.bn_splits or cfg.bn == "sync"):
        raise ValueError(f"--bn-splits {cfg.bn_splits} needs --bn shuffle|none and a --batch-size divisible by it "
                         f"(got --bn {cfg.bn}, --batch-size {cfg.batch_size})")
    for name in ("lr", "temperature", "knn_temperature"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")
    for name in ("momentum", "sgd_momentum"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(cfg, name)}")
    if build_negative(cfg.nda) is not None and cfg.nda_k == 0:  # the spec built here: its errors name --nda
        raise ValueError("--nda-k must be >= 1 when --nda is set (use --nda none for plain MoCo)")
    return cfg


def build_negative(spec: str):
    """``nda.build(spec)``, refusing text negatives (every member of a composite): MoCo here is on images."""
    return nda.build(spec, modality="image", argument="--nda")


def check_world(cfg: MoCoConfig, world: int, device: torch.device, nda_k: int) -> int:
    """Checks that need the process count; returns the keys enqueued per micro-step."""
    if cfg.bn == "sync" and world > 1 and device.type == "cpu":
        raise ValueError("--bn sync needs GPUs (torch's SyncBatchNorm has no CPU kernel); use --bn shuffle")
    return check_queue_config(cfg.queue_size, cfg.batch_size, world, nda_k, cfg.nda_to_queue and nda_k > 0)


def lr_at(step: int, cfg: MoCoConfig) -> float:
    """Linear warm-up, then cosine decay to 0 at ``cfg.steps``: a pure function of the step (nothing to checkpoint)."""
    return warmup_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, "cosine")


def main(argv: list[str] | None = None) -> dict:
    cfg = validate(parse_config(MoCoConfig, argv))
    negative = build_negative(cfg.nda)  # before any data or model loading
    K = cfg.nda_k if negative is not None else 0
    from accelerate.utils import DistributedDataParallelKwargs

    acc = make_accelerator(cfg, kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=True)])
    world, device = acc.num_processes, acc.device
    enqueue_per_step = check_world(cfg, world, device, K)

    with Run(cfg, acc, job="moco") as run:
        # ----------------------------------------------------------------------------------- data
        from nda.data.images import load_images
        from nda.metrics.representation import extract_features, knn_accuracy, linear_probe

        with acc.main_process_first():  # decode once, the other ranks read the cache
            train = load_images(cfg.data, "train", cfg.image_size, cfg.channels, cfg.train_limit, cfg.cache_dir)
            test = load_images(cfg.data, "test", cfg.image_size, cfg.channels, cfg.test_limit, cfg.cache_dir) \
                if cfg.final_eval or cfg.knn_every else None
        run.bind_data(lambda: data_fingerprint(train.images, train.labels), f"{train.name} ({len(train)} images)")
        acc.print(f"data: {train!r}" + (f", eval: {test.name}" if test else ""))

        # --------------------------------------------------------------------------------- models
        torch.manual_seed(cfg.seed)  # model init: identical on every rank
        model = MoCo(cfg.arch, cfg.cifar_stem, train.channels, cfg.dim, cfg.hidden_dim, cfg.queue_size, cfg.momentum,
                     cfg.bn, cfg.bn_splits)
        if cfg.bn == "sync" and world > 1:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # split BN is a free view of NCHW activations (a copy for channels-last ones): NCHW when bn_splits > 1
        channels_last = cfg.channels_last and device.type == "cuda" and cfg.bn_splits == 1
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        augment = MoCoV2Augment(train.image_size)
        criterion = ContrastiveNegativeLoss(temperature=cfg.temperature)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                    momentum=cfg.sgd_momentum, weight_decay=cfg.weight_decay)
        model, optimizer = acc.prepare(model, optimizer)
        moco: MoCo = acc.unwrap_model(model)  # key encoder, queue: updated outside the DDP forward
        start = run.restore(model=model, optimizer=optimizer)  # the queue and its pointer are model buffers

        def features(data, limit=None):
            imgs = data.images[:limit] if limit else data.images
            return extract_features(moco.backbone, imgs, cfg.eval_batch_size, device), data.labels[: imgs.shape[0]]

        # ----------------------------------------------------------------------------------- loop
        t0, monitor_seconds = time.time(), 0.0
        micro_steps = MicroSchedule(cfg.grad_accum)
        model.train()
        for step in run.loop():
            set_lr(optimizer, lr_at(step, cfg))
            moco.momentum_update()  # k = m k + (1 - m) q, before this step's keys (as in MoCo)
            stats = torch.zeros(len(STAT_NAMES), device=device) if run.log_due else None
            for micro, i in micro_steps.micro_steps(step):  # i: data order and draws are functions of it
                x = train.take(run.batch_indices(i, len(train), cfg.batch_size), device)  # uint8 on the device
                with run.accumulate(model, micro):
                    out = moco_step(model, moco, criterion, augment, negative, x, K, nda_source=cfg.nda_source,
                                    channels_last=channels_last, autocast=acc.autocast,
                                    augment_generator=run.generator("augment", i),
                                    nda_generator=run.generator("nda", i), shuffle_generator=run.generator("shuffle", i))
                    acc.backward(out.loss / cfg.grad_accum)
                enqueue_keys(moco, out, cfg.nda_to_queue)
                if stats is not None:
                    stats += step_stats(out, cfg.temperature) / cfg.grad_accum
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            row: dict = {}
            if stats is not None:  # the logging step's own values (micro-batches and processes averaged)
                row = {name: stats[j] for j, name in enumerate(STAT_NAMES) if K or name != "sim_nda"}
                row["lr"] = optimizer.param_groups[0]["lr"]
            if test is not None and run.every(cfg.knn_every):
                t_mon = time.time()
                if run.is_main:
                    (f_bank, y_bank), (f_test, y_test) = features(train, cfg.monitor_limit), features(test)
                    row["knn_top1"] = knn_accuracy(f_bank, y_bank, f_test, y_test, k=cfg.knn_k,
                                                   temperature=cfg.knn_temperature)
                model.train()
                monitor_seconds += time.time() - t_mon
            if row:
                run.log(row)  # a collective: every rank logs the same tensor keys
        train_seconds = time.time() - t0 - monitor_seconds

        # ---------------------------------------------------------------------------------- report
        queues = concat_all_gather(moco.queue.detach()[None].contiguous())  # (world, Q, D): prove they agree
        steps_run = run.step - start
        results: dict = {
            "task": "moco", "global_batch": cfg.batch_size * world * cfg.grad_accum,
            "keys_enqueued_per_micro_step": enqueue_per_step, "nda": cfg.nda, "nda_k": K, "train_set": train.name,
            "queue_ptr": int(moco.queue_ptr), "train_seconds_this_session": round(train_seconds, 1),
            "queue_sha256": [hashlib.sha256(q.float().cpu().numpy().tobytes()).hexdigest() for q in queues],
            "images_per_s": round(cfg.batch_size * world * cfg.grad_accum * steps_run / max(train_seconds, 1e-9), 1),
        }
        if run.is_main and not run.stopped_early:  # a --max-minutes stop: checkpointed; --resume finishes the run
            save_model(run.out_dir / "final", moco, MoCo, moco.config(),
                       meta={"image_size": train.image_size, "step": run.step, "train_set": train.name})
            if cfg.final_eval and test is not None:
                (f_train, y_train), (f_test, y_test) = features(train), features(test)
                knn = knn_accuracy(f_train, y_train, f_test, y_test, k=cfg.knn_k, temperature=cfg.knn_temperature)
                probe = linear_probe(f_train, y_train, f_test, y_test, epochs=cfg.probe_epochs,
                                     batch_size=cfg.probe_batch_size, seed=cfg.seed)
                results.update({
                    "knn_top1": knn, "linear_probe_top1": probe, "eval_set": test.name,
                    "extractor": f"MoCo query backbone ({cfg.arch}, pooled {moco.feature_dim}-d features, no head)",
                    "knn": {"k": cfg.knn_k, "temperature": cfg.knn_temperature, "bank": train.name},
                    "linear_probe": {"epochs": cfg.probe_epochs, "batch_size": cfg.probe_batch_size,
                                     "features": "standardised"},
                })
                acc.print(f"test ({test.name}): kNN top-1 {knn:.4f} | linear probe top-1 {probe:.4f}")
        out = run.finish(results)
        if run.is_main:
            plot_metrics(run.out_dir / "metrics.csv", run.out_dir / "loss_plot.png", PLOT_COLUMNS)
    acc.end_training()
    return out


def run(prog: str = "nda-moco") -> None:
    """The command line: ``nda-moco``, ``python -m nda.jobs.moco``, ``python tasks/moco.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
