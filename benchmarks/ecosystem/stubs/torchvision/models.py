"""No models in the ecosystem stub. Names resolve (libraries such as torchmetrics import some at import time when
they see a torchvision), but building a model raises."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise NotImplementedError(f"torchvision.models.{name} is not in the ecosystem stub")

    missing.__name__ = name
    return missing
