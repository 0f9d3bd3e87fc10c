def __getattr__(name):
    raise ImportError(f"torchvision.models.{name} is not in the ecosystem stub")
