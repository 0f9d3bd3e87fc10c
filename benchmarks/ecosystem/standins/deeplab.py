"""Stand-in data for VainF/DeepLabV3Plus-Pytorch (VOC 2012 layout): datasets/data/VOCdevkit/VOC2012 with a few
random JPEG images, palette masks with labels 0-20 and 255, the train/val split files; and the MobileNetV2 ImageNet
weights it downloads at start, replaced by the repository's own freshly initialised backbone saved into the torch
hub cache under the file name it looks for ($TORCH_HOME, set by the recipe). Run in the repository root. Fixed seed."""
import os
import sys

import numpy as np
import torch
from PIL import Image

rng = np.random.default_rng(0)
root = "datasets/data/VOCdevkit/VOC2012"
for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
n = int(os.environ.get("PTM_ECO_N", "16"))
names = [f"eco_{i:04d}" for i in range(n)]
for name in names:
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(f"{root}/JPEGImages/{name}.jpg")
    mask = rng.integers(0, 21, (96, 128), dtype=np.uint8)
    mask[:4] = 255
    Image.fromarray(mask, mode="P").save(f"{root}/SegmentationClass/{name}.png")
with open(f"{root}/ImageSets/Segmentation/train.txt", "w") as f:
    f.write("\n".join(names[: n * 3 // 4]) + "\n")
with open(f"{root}/ImageSets/Segmentation/val.txt", "w") as f:
    f.write("\n".join(names[n * 3 // 4:]) + "\n")

sys.path.insert(0, os.getcwd())
from network.backbone import mobilenetv2  # noqa: E402

torch.manual_seed(0)
hub = os.path.join(os.environ.get("TORCH_HOME", "torch_home"), "hub", "checkpoints")
os.makedirs(hub, exist_ok=True)
torch.save(mobilenetv2.mobilenet_v2(pretrained=False).state_dict(), os.path.join(hub, "mobilenet_v2-b0353104.pth"))
