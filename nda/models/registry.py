"""The allow-list of model classes a saved model folder may name, and the Hub mixin they share.

Why an allow-list: a saved folder's ``model.json`` names the class that rebuilds it. Importing whatever
dotted name a file holds let a folder run any importable code (``nda.__main__.main`` runs the CLI and exits
the process; any module with import-time effects ran too). Here the name in a file is only a *key* looked up
in :data:`MODELS`, which holds the ``nn.Module`` classes decorated with :func:`register_model`; the registry
is filled by importing the known model modules explicitly (:func:`registered_models`), never by the name
a file holds.

Why :class:`HubModel`: ``huggingface_hub.PyTorchModelHubMixin`` gives every registered model
``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` (``config.json`` + ``model.safetensors`` +
a model card), so the folders ``nda.run.save_model`` writes load with the ecosystem's own loader too.

>>> from nda.models.gan import DCGANGenerator
>>> model_class("nda.models.gan.DCGANGenerator") is DCGANGenerator
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from huggingface_hub import PyTorchModelHubMixin
from torch import nn

__all__ = ["MODELS", "HubModel", "register_model", "registered_models", "model_class", "model_key"]

M = TypeVar("M", bound=type)

#: registry key -> class. The key is the class's dotted path where it was registered: a plain string that is
#: looked up here, never imported (so folders written before the registry keep loading unchanged).
MODELS: dict[str, type[nn.Module]] = {}
_ALIASES: dict[str, str] = {}  # former names of a registered class -> its key

PAPER_URL = "https://arxiv.org/abs/2102.05113"  # Sinha et al., Negative Data Augmentation, ICLR 2021

MODEL_CARD = """---
{{ card_data }}
---

# {{ model_name }}

A `{{ model_class }}` trained with [negative data augmentation]({{ paper_url }}) (Sinha et al., ICLR 2021)
by the `nda` package. Rebuild it with `{{ model_class }}.from_pretrained(path_or_repo_id)`
(huggingface_hub's `PyTorchModelHubMixin`); `nda.run.load_model(folder)` also reads the folders the nda
training jobs write. The weights are safetensors: nothing is unpickled.

## Constructor arguments
{% for key, value in (arguments or {}).items() %}
- `{{ key }}`: `{{ value }}`{% endfor %}

## Training
{% for key, value in (meta or {}).items() %}
- `{{ key }}`: `{{ value }}`{% else %}
Not recorded.{% endfor %}
"""


class HubModel(PyTorchModelHubMixin, library_name="nda", tags=["nda", "negative-data-augmentation"],
               paper_url=PAPER_URL, model_card_template=MODEL_CARD):
    """``PyTorchModelHubMixin`` with the project's model card, loading weights strictly by default.

    Why strict: the mixin's default (``strict=False``) silently keeps random weights for every tensor
    a folder lacks; a model saved by this project always holds all of them.
    """

    @classmethod
    def _from_pretrained(cls, *, strict: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        return super()._from_pretrained(strict=strict, **kwargs)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("model_class", type(self).__name__)
        kwargs.setdefault("model_name", f"nda {type(self).__name__}")
        kwargs.setdefault("arguments", self._hub_mixin_config or {})
        return super().generate_model_card(*args, **kwargs)


def register_model(cls: M | None = None, *, aliases: tuple[str, ...] = ()) -> M | Callable[[M], M]:
    """Class decorator: allow ``cls`` (an ``nn.Module`` class) to be rebuilt from a saved folder.

    ``aliases``: former dotted names of the class (after a move or a rename), so older folders still load.
    """

    def add(klass: M) -> M:
        if not (isinstance(klass, type) and issubclass(klass, nn.Module)):
            raise TypeError(f"register_model: only torch.nn.Module classes can be registered, got {klass!r}")
        key = f"{klass.__module__}.{klass.__qualname__}"
        if MODELS.get(key, klass) is not klass:
            raise ValueError(f"register_model: {key!r} is already registered to another class")
        MODELS[key] = klass
        for alias in aliases:
            _ALIASES[alias] = key
        return klass

    return add(cls) if cls is not None else add


def registered_models() -> Mapping[str, type[nn.Module]]:
    """The allow-list, after importing the modules that define the registered models (explicitly, by name
    in this function -- never a name read from a file)."""
    from nda.models import cifar_classifier, gan, moco  # noqa: F401  (their @register_model fills MODELS)

    return MODELS


def model_class(name: str) -> type[nn.Module]:
    """The registered class for ``name`` (its key or a former name); ``KeyError`` naming the known keys."""
    models = registered_models()
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if not isinstance(key, str) or key not in models:
        raise KeyError(f"{name!r} is not a registered model (known: {', '.join(sorted(models))})")
    return models[key]


def model_key(factory: Any) -> str:
    """The registry key of ``factory`` (a registered class, its key or a former name); ``KeyError`` otherwise."""
    if isinstance(factory, type):
        key = f"{factory.__module__}.{factory.__qualname__}"
        if registered_models().get(key) is not factory:
            raise KeyError(f"{factory.__qualname__} is not a registered model class (decorate it with @register_model)")
        return key
    cls = model_class(factory)
    return f"{cls.__module__}.{cls.__qualname__}"
