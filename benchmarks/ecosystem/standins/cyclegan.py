"""Stand-in data for the CycleGAN example (aladdinpersson/Machine-Learning-Collection, GANs/CycleGAN): a few random
RGB images under data/train/{horses,zebras} and cyclegan_test/{horse1,zebra1}, the saved_images/ folder, and the
four checkpoints that config.LOAD_MODEL = True makes train.py load (fresh models and optimizers built with the
example's own classes, so run this in its folder). Fixed seed."""
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.getcwd())
rng = np.random.default_rng(0)
n = int(os.environ.get("PTM_ECO_N", "8"))
for folder in ("data/train/horses", "data/train/zebras", "cyclegan_test/horse1", "cyclegan_test/zebra1"):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(f"{folder}/{i}.png")
os.makedirs("saved_images", exist_ok=True)

torch.manual_seed(0)
from discriminator_model import Discriminator  # noqa: E402
from generator_model import Generator  # noqa: E402

disc_h, disc_z = Discriminator(in_channels=3), Discriminator(in_channels=3)
gen_z, gen_h = Generator(img_channels=3, num_residuals=9), Generator(img_channels=3, num_residuals=9)
opt_disc = torch.optim.Adam(list(disc_h.parameters()) + list(disc_z.parameters()), lr=1e-5, betas=(0.5, 0.999))
opt_gen = torch.optim.Adam(list(gen_z.parameters()) + list(gen_h.parameters()), lr=1e-5, betas=(0.5, 0.999))
for name, model, opt in (("genh", gen_h, opt_gen), ("genz", gen_z, opt_gen), ("critich", disc_h, opt_disc),
                         ("criticz", disc_z, opt_disc)):
    torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict()}, f"{name}.pth.tar")
