"""A small configuration for ermongroup/ddim (configs/eco.yml): CIFAR10-shaped data from the torchvision stub, a
small UNet, 100 diffusion steps, batch 8, no workers. Written here; the repository's own configs are not used."""
import os

os.makedirs("configs", exist_ok=True)
with open("configs/eco.yml", "w") as f:
    f.write("""\
data:
    dataset: "CIFAR10"
    image_size: 32
    channels: 3
    logit_transform: false
    uniform_dequantization: false
    gaussian_dequantization: false
    random_flip: true
    rescaled: true
    num_workers: 0
model:
    type: "simple"
    in_channels: 3
    out_ch: 3
    ch: 32
    ch_mult: [1, 2]
    num_res_blocks: 1
    attn_resolutions: [16, ]
    dropout: 0.1
    var_type: fixedlarge
    ema_rate: 0.9999
    ema: True
    resamp_with_conv: True
diffusion:
    beta_schedule: linear
    beta_start: 0.0001
    beta_end: 0.02
    num_diffusion_timesteps: 100
training:
    batch_size: 8
    n_epochs: 1
    n_iters: 1000
    snapshot_freq: 100000
    validation_freq: 100000
sampling:
    batch_size: 8
    last_only: True
optim:
    weight_decay: 0.000
    optimizer: "Adam"
    lr: 0.0002
    beta1: 0.9
    amsgrad: false
    eps: 0.00000001
    grad_clip: 1.0
""")
