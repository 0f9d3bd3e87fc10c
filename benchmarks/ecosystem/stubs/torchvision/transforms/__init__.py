import numpy as np
import torch


class _Identity:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __call__(self, x, *rest):
        return x if not rest else (x,) + rest

    def __repr__(self):
        return type(self).__name__ + "()"


class Compose(_Identity):
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class ToTensor(_Identity):
    def __call__(self, x):
        if isinstance(x, torch.Tensor):
            return x
        a = np.asarray(x, dtype=np.float32)
        if a.ndim == 2:
            a = a[:, :, None]
        return torch.from_numpy(a.transpose(2, 0, 1) / 255.0)


class Normalize(_Identity):
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std = mean, std

    def __call__(self, x):
        m = torch.as_tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        s = torch.as_tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return (x - m) / s


class Lambda(_Identity):
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


class _Size(_Identity):
    """Resize / crops: bilinear resize of a CxHxW tensor to the requested size."""

    def __init__(self, size=None, *args, **kwargs):
        self.size = size

    def __call__(self, x):
        if not isinstance(x, torch.Tensor) or self.size is None:
            return x
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        if tuple(x.shape[-2:]) == size:
            return x
        return torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


Resize = Scale = CenterCrop = RandomCrop = RandomResizedCrop = _Size


def __getattr__(name):  # every other transform (flips, jitter, ...) is the identity
    if name[:1].isupper():
        return type(name, (_Identity,), {})
    raise AttributeError(name)


class InterpolationMode:
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


from . import functional  # noqa: E402,F401


class Pad(_Identity):
    def __init__(self, padding, fill=0, padding_mode="constant"):
        self.padding, self.fill = padding, fill

    def __call__(self, x):
        p = self.padding
        p = (p, p, p, p) if isinstance(p, int) else (tuple(p) * 2 if len(p) == 2 else tuple(p))
        return torch.nn.functional.pad(x, (p[0], p[2], p[1], p[3]), value=self.fill)
