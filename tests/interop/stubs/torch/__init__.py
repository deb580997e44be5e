"""Import-time stand-in for `torch`, for running Fed-BioMed's transport only.

`fedbiomed.common.serializer` (and a few modules it pulls in) import `torch`
at import time, but moving msgpack messages with numpy/bytes payloads never
touches a real tensor. This package makes those imports succeed:

- any attribute (`torch.Tensor`, `torch.nn.Module`, ...) is a fresh dummy
  class, so `isinstance(x, torch.Tensor)` is always False;
- any submodule (`import torch.nn.functional`, `from torch.utils.data import
  Dataset`) is created on the fly as another stand-in module.

It is placed first on PYTHONPATH by tests/interop/setup.sh users; it must
never be installed into an environment that needs the real torch.
"""

import importlib.abc
import importlib.machinery
import sys
import types

# declearn checks `torch.__version__.startswith("2.")` at import time.
__version__ = "2.0.0+fedroute.stub"
IS_FEDROUTE_STUB = True


class _DummyMeta(type):
    """Metaclass of the dummy classes: `torch.nn.Module` works even when
    `torch.nn` was reached as an attribute (a dummy class) rather than imported."""

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _dummy(name)
        setattr(cls, name, value)
        return value


class _DummyBase(metaclass=_DummyMeta):
    """Instances accept any arguments and are falsy (`torch.cuda.is_available()`
    is then False)."""

    def __init__(self, *args, **kwargs):
        pass

    def __bool__(self):
        return False

    def __call__(self, *args, **kwargs):
        return _DummyBase()


def _dummy(name):
    return _DummyMeta(name, (_DummyBase,), {"__module__": "torch"})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _dummy(name)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("torch."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        parent, _, child = module.__name__.rpartition(".")
        setattr(sys.modules[parent], child, module)


sys.meta_path.insert(0, _Finder())

# Make the package itself answer unknown attributes with dummy classes too.
sys.modules[__name__].__class__ = _StubModule

# Attributes commonly read at import time as values rather than classes.
float32 = "float32"
float64 = "float64"
