"""Map line numbers of a rewritten text back to the text it came from, so diagnostics name input lines."""
from __future__ import annotations

import difflib
from typing import List


def back_map(old: str, new: str) -> List[int]:
    """result[i] = 1-based line in `old` that line i+1 of `new` came from (inserted lines: the line before)."""
    a, b = old.splitlines(), new.splitlines()
    out = [1] * (len(b) + 1)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for j in range(j1, j2):
            if tag == "equal" or tag == "replace":
                out[j] = min(i1 + (j - j1), max(i2 - 1, i1)) + 1
            else:  # insert
                out[j] = max(i1, 1)
    out[len(b)] = max(len(a), 1)
    return out
