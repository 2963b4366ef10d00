"""Provides torch's compiler module (torch._dynamo) on demand, so that eager training never waits for it.

torch.optim imports torch._dynamo (about as long as `import torch` itself: torch.distributed,
sympy, the tracer) only to mark its methods "do not compile" and to place graph breaks, both
of which do nothing outside compilation. `defer()` puts the real module object in sys.modules
before its code has run, answering those two names at once; the first other attribute, or the
import of one of its submodules, runs the real code into that same object. Nobody ever holds
a second copy, and torch.compile, torch.export and ONNX export work as before, only later.

Methods torch marked while the stand-in answered stay unmarked: they are torch.optim's, which
matter only to code that compiles the optimizer itself, which tuitrain never does. Set
TUITRAIN_EAGER_DYNAMO=1 to load torch's compiler as torch does.

The stand-in leans on how torch.optim uses torch._dynamo, which torch may change in any release: it
is put in place only under the torch versions it was tested with (TESTED_TORCH, checked by
tests/test_dynamo_standin.py: torch.compile and ONNX export with the stand-in in place). Under any
other torch, torch's own module loads as usual.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

NAME = "torch._dynamo"
OPT_OUT = "TUITRAIN_EAGER_DYNAMO"
TESTED_TORCH = ("2.14",)  # major.minor releases of torch the stand-in was tested with
_lock = threading.RLock()


def _disable(fn: Callable[..., Any] | None = None, recursive: bool = True, **_: Any) -> Any:
    """`torch._dynamo.disable` before compilation is possible: nothing to keep from compiling."""
    return fn if fn is not None else (lambda f: f)


def _graph_break(msg: str = "") -> None:
    """A graph break outside compilation does nothing (as in torch)."""


EAGER = {"disable": _disable, "graph_break": _graph_break}


class _NotYetRun(types.ModuleType):
    """torch._dynamo before its code has run: the first name not in EAGER runs it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(load(), name)


class _Existing(importlib.abc.Loader):
    """Hands the import system a submodule the real package already imported, instead of a copy."""

    def __init__(self, module: types.ModuleType):
        self.module, self.spec = module, module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set ours; the module keeps its own


class _ParentFirst(importlib.abc.MetaPathFinder):
    """`import torch._dynamo.x` runs the package first, as a normal import would."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith(NAME + "."):
            return None
        load()
        if name in sys.modules:  # the package's own code imported it meanwhile
            return importlib.util.spec_from_loader(name, _Existing(sys.modules[name]))
        return None


def tested(torch_version: str) -> bool:
    """Whether `torch_version` (torch.__version__, e.g. "2.14.1+cu130") is a release the stand-in was tested with."""
    release = torch_version.split("+")[0].split(".")
    return ".".join(release[:2]) in TESTED_TORCH


def deferred() -> bool:
    """Whether torch._dynamo's code has yet to run (the stand-in is answering)."""
    return type(sys.modules.get(NAME)) is _NotYetRun


def defer() -> bool:
    """Put the stand-in in place, unless the compiler is loaded already, TUITRAIN_EAGER_DYNAMO is set or
    torch is a version the stand-in was not tested with."""
    with _lock:
        if NAME in sys.modules or os.environ.get(OPT_OUT, "") not in ("", "0"):
            return False
        import torch

        if not tested(str(torch.__version__)):
            return False
        spec = importlib.util.find_spec(NAME)
        if spec is None or spec.loader is None:
            return False
        module = importlib.util.module_from_spec(spec)
        module.__class__ = _NotYetRun
        module.__dict__.update(EAGER)
        sys.modules[NAME] = module
        torch._dynamo = module  # as the import system would
        if not any(isinstance(finder, _ParentFirst) for finder in sys.meta_path):
            sys.meta_path.insert(0, _ParentFirst())
        return True


def load() -> types.ModuleType:
    """The real torch._dynamo, its code run now if the stand-in was answering."""
    with _lock:
        module: types.ModuleType | None = sys.modules.get(NAME)
        if module is None:
            return importlib.import_module(NAME)
        if type(module) is _NotYetRun:
            setattr(module, "__class__", types.ModuleType)  # noqa: B010  (mypy: no narrowing back)
            for name in EAGER:
                del module.__dict__[name]
            assert module.__spec__ is not None and module.__spec__.loader is not None
            try:
                module.__spec__.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(NAME, None)
                raise
        return module
