"""A no-op `wandb` for the pt-migrate ecosystem check (nothing leaves the machine)."""


class _Run:
    def __getattr__(self, name):
        return lambda *a, **k: None

    def log(self, *a, **k):
        pass

    def finish(self, *a, **k):
        pass


run = None
config = {}


def init(*a, **k):
    global run
    run = _Run()
    return run


def log(*a, **k):
    pass


def finish(*a, **k):
    pass


def watch(*a, **k):
    pass


def save(*a, **k):
    pass


class Image:
    def __init__(self, *a, **k):
        pass


Table = Histogram = Video = Image
