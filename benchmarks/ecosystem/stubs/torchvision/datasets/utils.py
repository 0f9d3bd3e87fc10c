def download_url(*args, **kwargs):
    raise RuntimeError("no downloads in the ecosystem check: the stand-in data must be in place")


def check_integrity(fpath, md5=None):
    import os
    return os.path.exists(fpath)
