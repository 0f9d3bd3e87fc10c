"""The functional transforms the corpus uses, on PIL images (resize, crop, pad, flips) and tensors (to_tensor,
normalize). Colour and rotation adjustments return the image unchanged."""
import numpy as np
import torch
from PIL import Image, ImageOps


def _size(img):
    return img.size  # (w, h)


def resize(img, size, interpolation=Image.BILINEAR, **kw):
    w, h = img.size
    if isinstance(size, int):
        if w < h:
            size = (int(size * h / w), size)
        else:
            size = (size, int(size * w / h))
    return img.resize((size[1], size[0]), interpolation if isinstance(interpolation, int) else Image.BILINEAR)


def crop(img, top, left, height, width):
    return img.crop((left, top, left + width, top + height))


def center_crop(img, output_size):
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    w, h = img.size
    th, tw = output_size
    return crop(img, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)


def pad(img, padding, fill=0, padding_mode="constant"):
    if isinstance(padding, int):
        padding = (padding,) * 4
    elif len(padding) == 2:
        padding = (padding[0], padding[1], padding[0], padding[1])
    return ImageOps.expand(img, border=tuple(padding), fill=fill)


def hflip(img):
    return img.transpose(Image.FLIP_LEFT_RIGHT)


def vflip(img):
    return img.transpose(Image.FLIP_TOP_BOTTOM)


def to_tensor(pic):
    if isinstance(pic, torch.Tensor):
        return pic
    a = np.asarray(pic, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.transpose(2, 0, 1).copy() / 255.0)


def normalize(tensor, mean, std, inplace=False):
    m = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - m) / s


def _same(img, *args, **kwargs):
    return img


adjust_brightness = adjust_contrast = adjust_saturation = adjust_hue = rotate = _same
