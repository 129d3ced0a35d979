"""Loading checkpoints without running their code: ``torch.load(weights_only=True)`` with an allow-list.

A pickle can call any importable function while it loads (``__reduce__`` → ``os.system``). medbench therefore
unpickles with torch's restricted unpickler, which builds only tensors, plain containers and the globals
allowed here:

* every ``nn.Module`` class defined under ``torch.nn.modules``, ``ultralytics.nn.modules`` / ``.tasks``,
  ``torchvision.models``,
  ``torchvision.ops`` and ``medbench.models`` (computed from the imported module tree, not a hand list),
  plus the classes of the modules the user names in ``model.imports``;
* the plain types Ultralytics keeps beside the model (``train_args`` / ``train_metrics``): paths,
  ``SimpleNamespace`` / ``IterableSimpleNamespace``, numpy arrays, scalars and dtypes, ``functools.partial``
  (torchvision's ViT keeps ``partial(LayerNorm, eps=...)``);
* the legacy names old Ultralytics checkpoints use (``ultralytics.yolo.utils.*``, ``pathlib.WindowsPath``)
  as aliases of today's classes, so nothing is imported under an old name.

A checkpoint that needs anything else is refused in one line that names the global and the opt-in:
``model.trust_weights=true`` (a full ``weights_only=False`` unpickle, recorded in the result) for a file the
user trusts, or ``model.imports=[my_pkg.layers]`` for the user's own layers.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pathlib
import pickle
import re
import sys
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medbench.errors import ModelError

# Packages whose nn.Module classes a checkpoint may hold without an opt-in (prefixes of ``cls.__module__``).
# Not all of ``ultralytics.nn``: the restricted unpickler may *call* an allowed class, and AutoBackend(path) or the
# text models load further files or weights when constructed. The layers and the task models only build layers.
TRUSTED_MODULE_ROOTS = ("torch.nn.modules", "ultralytics.nn.modules", "ultralytics.nn.tasks", "torchvision.models",
                        "torchvision.ops", "medbench.models")
_TRUSTED_PACKAGES = ("torch.nn", "ultralytics.nn.tasks", "ultralytics.nn.modules", "torchvision.models",
                     "torchvision.ops", "medbench.models.modules")
# Old Ultralytics module paths → today's (what ``ultralytics.nn.tasks.torch_safe_load`` maps).
_LEGACY_MODULES = {"ultralytics.yolo.utils": "ultralytics.utils", "ultralytics.yolo.v8": "ultralytics.models.yolo",
                   "ultralytics.yolo.data": "ultralytics.data"}
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: (?:GLOBAL )?([\w.<>]+)|GLOBAL ([\w.<>]+)")


def import_user_modules(names: Iterable[str]) -> list[types.ModuleType]:
    """Import the modules of ``model.imports`` (the user's own layers); one ModelError line when one fails."""
    mods = []
    for name in names:
        name = str(name).strip()
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise ModelError(f"model.imports: {name!r} is not a module name (write it as my_pkg.layers)")
        try:
            mods.append(importlib.import_module(name))
        except Exception as e:  # ImportError, or the module's own code failing
            raise ModelError(f"model.imports: cannot import {name} ({type(e).__name__}: {e})") from e
    return mods


def _subclasses(cls: type) -> Iterator[type]:
    seen: set[type] = set()
    stack = [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                yield sub


def _import_trusted_packages() -> None:
    for name in _TRUSTED_PACKAGES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def module_classes(roots: Iterable[str]) -> list[type[nn.Module]]:
    """Every imported ``nn.Module`` subclass whose defining module is (under) one of ``roots``."""
    roots = tuple(roots)
    out = []
    for cls in _subclasses(nn.Module):
        mod = getattr(cls, "__module__", "") or ""
        if "<locals>" not in cls.__qualname__ and any(mod == r or mod.startswith(r + ".") for r in roots):
            out.append(cls)
    return out


def _plain_types() -> list[Any]:
    """Non-module globals of real checkpoints, with the aliases older files use."""
    import numpy as np

    plain: list[Any] = [types.SimpleNamespace, pathlib.PosixPath, (pathlib.PosixPath, "pathlib.WindowsPath"),
                        functools.partial, np.ndarray, np.dtype]
    plain += [type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGSUV"]  # numpy.dtypes.Float64DType, ...
    multiarray = getattr(np, "_core", None) or np.core
    for fn in ("_reconstruct", "scalar"):
        f = getattr(multiarray.multiarray, fn)
        plain += [(f, f"numpy.core.multiarray.{fn}"), (f, f"numpy._core.multiarray.{fn}")]
    with contextlib.suppress(ImportError):
        from ultralytics.utils import IterableSimpleNamespace

        plain += [IterableSimpleNamespace]
        plain += [(IterableSimpleNamespace, f"{old}.IterableSimpleNamespace") for old in _LEGACY_MODULES]
    return plain


def allowed_globals(user_modules: Iterable[types.ModuleType] = ()) -> list[Any]:
    """The allow-list handed to ``torch.serialization.safe_globals`` (classes, or ``(obj, "legacy.name")``)."""
    _import_trusted_packages()
    user_roots = [m.__name__ for m in user_modules]
    classes = module_classes((*TRUSTED_MODULE_ROOTS, *user_roots))
    aliases = []
    for cls in classes:  # old checkpoints name today's ultralytics.models.yolo / ultralytics.data classes by old paths
        for old, new in _LEGACY_MODULES.items():
            if cls.__module__.startswith(new + "."):
                aliases.append((cls, f"{old}{cls.__module__[len(new):]}.{cls.__qualname__}"))
        if cls.__module__.startswith("ultralytics.nn.modules."):  # Ultralytics 8.0.x pickled the package-level names
            aliases.append((cls, f"ultralytics.nn.modules.{cls.__qualname__}"))
    out = [*classes, *aliases, *_plain_types()]
    if torch.torch_version.TorchVersion(torch.__version__) < (2, 6):  # (obj, "name") aliases arrived in torch 2.6
        out = [g for g in out if not isinstance(g, tuple)]
    return out


def _refused_global(exc: BaseException) -> str | None:
    m = _UNSUPPORTED_GLOBAL.search(str(exc))
    return next((g for g in m.groups() if g), None) if m else None


def load_checkpoint(path: Path, *, trust: bool = False, imports: Iterable[str] = ()) -> Any:
    """``torch.load`` on CPU: restricted (allow-list) by default, full unpickling only with ``trust=True``.

    Every failure is one ModelError line: a refused global names itself and the two opt-ins.
    """
    user = import_user_modules(imports)
    if trust:
        return _trusted_load(path)
    try:
        with torch.serialization.safe_globals(allowed_globals(user)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        name = _refused_global(e) or ("code outside the allow-list" if "weights only load failed" in str(e).lower()
                                      and "unsupported" in str(e).lower() else None)
        if name is None:
            raise ModelError(f"not a PyTorch checkpoint: {path} ({_first_line(e)})") from e
        raise ModelError(
            f"checkpoint {path} needs {name}, which medbench does not load without running the file's code; "
            f"for your own layers add model.imports=[<their module>], or if you trust this file set "
            f"model.trust_weights=true") from None
    except Exception as e:  # text file, foreign zip, truncated file, ...: not something torch.save wrote
        raise ModelError(f"not a PyTorch checkpoint: {path} ({_first_line(e)})") from e


_MISSING_ATTR = re.compile(r"Can't get attribute '([\w.<>]+)' on <module '([\w.]+)'")


def _trusted_load(path: Path) -> Any:
    """The opt-in path (``model.trust_weights=true``): a full unpickle, with Ultralytics' legacy aliases."""
    from ultralytics.nn.tasks import temporary_modules

    try:
        with temporary_modules(modules=_LEGACY_MODULES, attributes={"pathlib.WindowsPath": "pathlib.PosixPath"}):
            return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise _unknown_module(path, e.name or str(e)) from e
    except AttributeError as e:  # the module exists but lacks the pickled class
        m = _MISSING_ATTR.search(str(e))
        raise _unknown_module(path, f"{m.group(2)}.{m.group(1)}" if m else str(e)) from e
    except ImportError as e:
        raise _unknown_module(path, e.name or str(e)) from e
    except Exception as e:
        raise ModelError(f"not a PyTorch checkpoint: {path} ({_first_line(e)})") from e


def _unknown_module(path: Path, name: str) -> ModelError:
    return ModelError(f"checkpoint {path} needs module '{name}' which cannot be imported here "
                      "(install the package that defines it, or re-save the model with known layers)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def user_module_classes(imports: Iterable[str]) -> dict[str, type[nn.Module]]:
    """``{class name: class}`` of the nn.Module layers defined in ``model.imports`` (for the YAML parser)."""
    mods = import_user_modules(imports)
    names = [m.__name__ for m in mods]
    return {cls.__name__: cls for cls in module_classes(names) if cls.__module__ in sys.modules}
