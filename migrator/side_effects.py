"""What a statement does once per run in a single-process script: downloads, data preparation, output files.

Read by the analysis (a helper that writes output takes the framework object, as one that prints does) and by
rules PTM150 (download-first) and PTM151 (write-once). Every function here only reads nodes; `qn` is the caller's
qualified-name lookup (node -> set of dotted names from the imports). Names that no import binds (`open`, a class
of the module) are read by their spelling.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Set

import libcst as cst

from migrator import matching as m
from migrator.names import dotted

QN = Callable[[cst.CSTNode], Set[str]]

# Calls that fetch data or weights into a local folder or cache.
DOWNLOAD_FUNCS = {
    "datasets.load_dataset", "datasets.load.load_dataset",
    "huggingface_hub.hf_hub_download", "huggingface_hub.snapshot_download",
    "torch.hub.load", "torch.hub.load_state_dict_from_url", "torch.hub.download_url_to_file",
    "torch.utils.model_zoo.load_url",
    "torchvision.datasets.utils.download_url", "torchvision.datasets.utils.download_and_extract_archive",
    "torchvision.datasets.utils.download_file_from_google_drive",
    "urllib.request.urlretrieve", "wget.download", "gdown.download",
}
# keyword arguments that make a constructor download: MNIST(..., download=True), resnet18(pretrained=True)
DOWNLOAD_KEYWORDS = ("download", "pretrained")
PRETRAINED_LIBS = ("transformers.", "diffusers.", "tokenizers.", "sentence_transformers.", "peft.", "timm.")

# One call, one output file: the statement runs on the main process only.
OUTPUT_FUNCS = {
    "torchvision.utils.save_image": "save_image", "matplotlib.pyplot.savefig": "savefig",
    "torch.onnx.export": "torch.onnx.export", "numpy.save": "np.save", "numpy.savez": "np.savez",
    "numpy.savez_compressed": "np.savez_compressed", "numpy.savetxt": "np.savetxt", "imageio.imwrite": "imwrite",
    "imageio.imsave": "imsave", "cv2.imwrite": "cv2.imwrite", "scipy.io.savemat": "savemat",
    "torchaudio.save": "torchaudio.save", "soundfile.write": "soundfile.write",
}
OUTPUT_TAILS = ("save_image",)  # `vutils.save_image`, `tvu.save_image` whatever the alias
OUTPUT_METHODS = {"savefig", "to_csv", "save_pretrained", "write_text", "write_bytes"}
DUMPS = {"json.dump", "pickle.dump", "yaml.dump", "yaml.safe_dump", "torch.save"}
WRITER_TAILS = ("SummaryWriter",)  # torch.utils.tensorboard, tensorboardX, a stand-in of the same name
OPEN_FUNCS = {"io.open", "codecs.open", "gzip.open", "bz2.open", "lzma.open"}
EXISTS_TAILS = ("path.exists", "path.isfile", "path.isdir", "exists", "is_file", "is_dir", "isfile", "isdir")
RANK_WORDS = ("rank", "is_master", "master_process", "is_main", "main_process", "is_global_zero", "master")


def _tail(call: cst.Call) -> str:
    name = dotted(call.func)
    return name.rsplit(".", 1)[-1] if name else ""


def _kw(call: cst.Call, name: str) -> Optional[cst.Arg]:
    return next((a for a in call.args if a.keyword is not None and a.keyword.value == name), None)


def _is_true(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "True"


def download_call(call: cst.Call, qn: QN) -> Optional[str]:
    """What the call downloads, in words (`MNIST(download=True)`), or None."""
    q = qn(call.func)
    name = dotted(call.func) or "a call"
    if q & DOWNLOAD_FUNCS:
        return f"`{name}(...)`"
    for kw in DOWNLOAD_KEYWORDS:
        arg = _kw(call, kw)
        if arg is not None and _is_true(arg.value):
            return f"`{name}(..., {kw}=True)`"
    if isinstance(call.func, cst.Attribute) and call.func.attr.value == "from_pretrained":
        recv = call.func.value
        if any(x.startswith(PRETRAINED_LIBS) for x in qn(recv)) or (dotted(recv) or "").startswith("Auto"):
            return f"`{name}(...)`"
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in ("prepare_data", "download") \
            and not call.args:
        return f"`{name}()`"
    return None


def open_mode(call: cst.Call, qn: QN) -> Optional[str]:
    """'function' for `open(path, "w")` (builtin, io, codecs, gzip ...), 'method' for `path.open("a")`, when the mode is
    a literal that writes (w, a, x or +); None otherwise (reading, or a mode computed at run time)."""
    func = call.func
    if isinstance(func, cst.Name) and func.value == "open" and not qn(func):
        kind, index = "function", 1
    elif qn(func) & OPEN_FUNCS:
        kind, index = "function", 1
    elif isinstance(func, cst.Attribute) and func.attr.value == "open" and not qn(func):
        kind, index = "method", 0
    else:
        return None
    positional = [a for a in call.args if a.keyword is None and not a.star]
    mode = _kw(call, "mode")
    value = mode.value if mode is not None else (positional[index].value if len(positional) > index else None)
    if isinstance(value, cst.SimpleString) and isinstance(value.evaluated_value, str) \
            and set(value.evaluated_value) & set("wax+"):
        return kind
    return None


def opened_path(call: cst.Call) -> Optional[cst.Arg]:
    """The argument that names the file of `open(file, ...)` (the first positional one, or `file=`)."""
    arg = _kw(call, "file")
    if arg is not None:
        return arg
    positional = [a for a in call.args if a.keyword is None and not a.star]
    return positional[0] if positional else None


LOG_FILE_CALLS = {"logging.FileHandler": 0, "logging.handlers.RotatingFileHandler": 0,
                  "logging.handlers.TimedRotatingFileHandler": 0, "logging.basicConfig": None}


def log_file_arg(call: cst.Call, qn: QN) -> Optional[cst.Arg]:
    """The file argument of `logging.FileHandler(path)` / `logging.basicConfig(filename=path)`, or None."""
    for name, index in LOG_FILE_CALLS.items():
        if name in qn(call.func):
            arg = _kw(call, "filename")
            positional = [a for a in call.args if a.keyword is None and not a.star]
            if arg is None and index is not None and len(positional) > index:
                arg = positional[index]
            return arg
    return None


def output_call(call: cst.Call, qn: QN) -> Optional[str]:
    """A call that writes one output file: `save_image`, `plt.savefig`, `np.save`, `torch.onnx.export`,
    `json.dump(x, open(p, "w"))`, `df.to_csv(p)` ...; its name, or None. `torch.save` is PTM136's."""
    q = qn(call.func)
    for full, short in OUTPUT_FUNCS.items():
        if full in q:
            return short
    name = dotted(call.func) or ""
    if _tail(call) in OUTPUT_TAILS:
        return name
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in OUTPUT_METHODS and not q:
        return name or call.func.attr.value
    if q & (DUMPS - {"torch.save"}) and any(isinstance(a.value, cst.Call) and open_mode(a.value, qn)
                                            for a in call.args):
        return name
    return None


def writer_ctor(call: cst.Call, qn: QN, writer_classes: Iterable[str] = ()) -> Optional[str]:
    """`SummaryWriter(...)` (any module), or a class of the module that writes files: its name, or None."""
    name = dotted(call.func) or ""
    tail = name.rsplit(".", 1)[-1]
    if tail in WRITER_TAILS or any(q.rsplit(".", 1)[-1] in WRITER_TAILS for q in qn(call.func)):
        return name
    if isinstance(call.func, cst.Name) and call.func.value in set(writer_classes):
        return name
    return None


def is_wandb_init(call: cst.Call, qn: QN) -> bool:
    return "wandb.init" in qn(call.func)


def writes(node: cst.CSTNode, qn: QN, writer_classes: Iterable[str] = ()) -> bool:
    """The code opens a file for writing, writes an output file, makes a writer, or starts a wandb run."""
    for call in m.findall(node, m.Call()):
        if open_mode(call, qn) or output_call(call, qn) or writer_ctor(call, qn, writer_classes) \
                or is_wandb_init(call, qn) or log_file_arg(call, qn) is not None:
            return True
    return False


def saves_to_file(node: cst.CSTNode, qn: QN) -> bool:
    """Writes a file in any way a cache does: the writes above, `torch.save`, `json.dump`, `pickle.dump`, `.save(`."""
    if writes(node, qn):
        return True
    for call in m.findall(node, m.Call()):
        if qn(call.func) & DUMPS or _tail(call) in ("save", "dump", "save_to_disk", "write"):
            return True
    return False


def downloads(node: cst.CSTNode, qn: QN) -> Optional[str]:
    """The first download call in the code, in words, or None."""
    for call in m.findall(node, m.Call()):
        what = download_call(call, qn)
        if what:
            return what
    return None


def exists_test(test: cst.BaseExpression) -> bool:
    """The test asks whether a file or folder exists: `os.path.exists(p)`, `not Path(p).is_file()`, ..."""
    for call in m.findall(test, m.Call()):
        name = dotted(call.func) or (call.func.attr.value if isinstance(call.func, cst.Attribute) else "")
        if name and any(name == t or name.endswith("." + t) for t in EXISTS_TAILS):
            return True
    return False


def caching_if(node: cst.If, qn: QN) -> bool:
    """`if not os.path.exists(p): <build and write p>` (or the write in the `else` of an exists test): data
    prepared once and kept in a file; the other processes should find it there."""
    if not exists_test(node.test):
        return False
    branches = [node.body] + ([node.orelse] if node.orelse is not None else [])
    return any(saves_to_file(b, qn) or downloads(b, qn) for b in branches)


LOADS = {"torch.load", "json.load", "pickle.load", "numpy.load", "yaml.safe_load", "yaml.load"}
LOAD_TAILS = ("load", "load_from_disk", "read_text", "read_bytes", "read_csv")


def reads_file(node: cst.CSTNode, qn: QN) -> bool:
    """The code reads a file: `torch.load(p)`, `json.load(f)`, `np.load`, `open(p)` for reading, `Path(p).read_text()`."""
    for call in m.findall(node, m.Call()):
        if qn(call.func) & LOADS or _tail(call) in LOAD_TAILS \
                or isinstance(call.func, cst.Attribute) and call.func.attr.value in LOAD_TAILS:
            return True
        if (dotted(call.func) == "open" or qn(call.func) & OPEN_FUNCS) and not open_mode(call, qn):
            return True
    return False


def caching_try(node: cst.Try, qn: QN) -> bool:
    """`try: x = torch.load(p)` / `except ...: <build x and write p>`: data prepared once and kept in a file, read
    through try/except. On several processes a rank can read the file while another is still writing it."""
    return reads_file(node.body, qn) and any(saves_to_file(h.body, qn) for h in node.handlers)


def rankish(test: cst.BaseExpression) -> bool:
    """A test that reads a rank or a main-process flag (`rank == 0`, `args.local_rank in [-1, 0]`,
    `is_master`, `fabric.is_global_zero`): the script already chose which process runs the code."""
    for node in m.findall(test, m.Name() | m.Attribute()):
        word = (node.value if isinstance(node, cst.Name) else node.attr.value).lower()
        if any(w in word for w in RANK_WORDS):
            return True
        if word in ("get_rank", "process_index", "local_process_index"):
            return True
    return False
