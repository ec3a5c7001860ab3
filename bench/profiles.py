"""Turn a cProfile dump into the few lines the report shows: where the time goes.

``profile_summary(path)`` returns the functions with the most own time and the most cumulative
time (as a share of the profiled process's total), with short ``file:line(function)`` names.
cProfile slows Python code down unevenly, so these shares locate hot spots; they are not timings.
"""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any


def _name(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else filename
    if "site-packages" in parts:
        index = parts.index("site-packages")
        short = "/".join(parts[index + 1 :])
    return f"{short}:{line}({name})"


def profile_summary(path: Path, top: int = 15) -> dict[str, Any]:
    if not path.exists():
        return {"profile_error": f"no profile written at {path.name}"}
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt or 1.0  # type: ignore[attr-defined]
    rows = [(func, cc, nc, tt, ct) for func, (cc, nc, tt, ct, _callers) in entries.items()]
    own = sorted(rows, key=lambda r: r[3], reverse=True)[:top]
    cumulative = sorted(
        (r for r in rows if not r[0][2].startswith("<") and r[0][0] != "~"),
        key=lambda r: r[4],
        reverse=True,
    )[: top * 2]
    text_path = path.with_suffix(".txt")
    with open(text_path, "w") as out:
        printer = pstats.Stats(str(path), stream=out)
        printer.sort_stats("tottime").print_stats(40)
        printer.sort_stats("cumulative").print_stats(60)
    return {
        "total_s": total,
        "own": [
            {"function": _name(f), "calls": nc, "share": tt / total, "own_s": tt}
            for f, _cc, nc, tt, _ct in own
        ],
        "cumulative": [
            {"function": _name(f), "calls": nc, "share": ct / total, "cum_s": ct}
            for f, _cc, nc, _tt, ct in cumulative
        ],
        "text": text_path.name,
    }
