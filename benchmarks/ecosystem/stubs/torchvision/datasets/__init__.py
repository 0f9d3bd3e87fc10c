import os
import zlib

import torch
from torch.utils.data import Dataset


def _n(train=True):
    n = int(os.environ.get("PTM_ECO_N", "256"))
    return n if train else max(n // 4, 8)


class _Synthetic(Dataset):
    shape = (1, 28, 28)
    classes_n = 10

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False, **kw):
        self.root, self.train, self.transform, self.target_transform = root, train, transform, target_transform
        if "split" in kw:
            self.train = kw["split"] in ("train", "unlabeled", "train+unlabeled")
        g = torch.Generator().manual_seed(zlib.crc32(f"{type(self).__name__}:{bool(self.train)}".encode()))
        n = _n(self.train)
        self.data = torch.rand((n,) + tuple(self.shape), generator=g)
        self.targets = torch.randint(0, self.classes_n, (n,), generator=g)
        self.classes = [str(i) for i in range(self.classes_n)]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i], int(self.targets[i])
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None:
            y = self.target_transform(y)
        return x, y


class MNIST(_Synthetic):
    # the legacy attributes (uint8 images, N x 28 x 28) that old tutorials read
    @property
    def train_data(self):
        return (self.data[:, 0] * 255).to(torch.uint8)

    test_data = train_data

    @property
    def train_labels(self):
        return self.targets

    test_labels = train_labels


class FashionMNIST(MNIST):
    pass


class KMNIST(MNIST):
    pass


class EMNIST(MNIST):
    pass


class CIFAR10(_Synthetic):
    shape = (3, 32, 32)


class CIFAR100(CIFAR10):
    classes_n = 100


class SVHN(CIFAR10):
    pass


class STL10(_Synthetic):
    shape = (3, 96, 96)


class ImageFolder(_Synthetic):
    shape = (3, 64, 64)

    def __init__(self, root=None, transform=None, target_transform=None, **kw):
        super().__init__(root, True, transform, target_transform)


class CelebA(_Synthetic):
    shape = (3, 64, 64)
    classes_n = 2

    def __init__(self, root=None, split="train", transform=None, target_transform=None, download=False, **kw):
        super().__init__(root, split == "train", transform, target_transform)


class FakeData(_Synthetic):
    def __init__(self, size=256, image_size=(3, 32, 32), num_classes=10, transform=None, target_transform=None, **kw):
        self.shape, self.classes_n = tuple(image_size), num_classes
        os.environ.setdefault("PTM_ECO_N", str(size))
        super().__init__(None, True, transform, target_transform)


class VisionDataset(Dataset):
    def __init__(self, root=None, transforms=None, transform=None, target_transform=None):
        self.root, self.transform, self.target_transform = root, transform, target_transform


from . import utils  # noqa: E402,F401
