import torch


def make_grid(tensor, nrow=8, padding=2, normalize=False, **kwargs):
    if isinstance(tensor, (list, tuple)):
        tensor = torch.stack(list(tensor))
    if tensor.dim() == 4:
        return torch.cat(list(tensor), dim=-1)
    return tensor


def save_image(tensor, fp, *args, **kwargs):
    with open(fp, "wb") as f:
        torch.save(make_grid(tensor.detach().cpu()), f)
