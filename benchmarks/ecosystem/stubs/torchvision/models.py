"""No models in the ecosystem stub. Every name resolves to a class, to any depth (models.inception.InceptionA), so
that libraries and scripts that import or subclass torchvision models at import time (torchmetrics, an FID
Inception) still import; building one raises."""


class _MissingMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _MissingMeta(name, (_Missing,), {})


class _Missing(metaclass=_MissingMeta):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"torchvision.models.{type(self).__name__} is not in the ecosystem stub")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _MissingMeta(name, (_Missing,), {})
