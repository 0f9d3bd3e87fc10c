"""A stand-in `torchvision` written for the pt-migrate ecosystem check (the CPU torch here has no torchvision).

Datasets return small synthetic tensors with the real shapes (fixed seeds, PTM_ECO_N samples, default 256);
transforms work on tensors (ToTensor passes tensors through, Normalize normalizes); utils.save_image writes a
file. Only what the corpus scripts touch is here. Never used where the real torchvision is installed: the GPU
script does not put this folder on the path.
"""
__version__ = "0.26.0"  # what the GPU image has; the stub itself has no version
from . import datasets, transforms, utils, models  # noqa: F401,E402
