"""A no-op `visdom` for the pt-migrate ecosystem check."""


class Visdom:
    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *a, **k: None
