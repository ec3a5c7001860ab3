"""What the report states about where it ran: machine, versions, commit, logging configuration."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.procs import ROOT, python_for

PACKAGES = ("aiohttp", "msgspec", "structlog", "aiosqlite", "PyYAML")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _python310() -> dict[str, str]:
    python = python_for("310")
    if not python:
        return {}
    code = (
        "import sys, importlib.metadata as m; "
        "print(sys.version.split()[0]); print(m.version('pymesos')); print(m.version('aiohttp'))"
    )
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, check=True, timeout=30
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"python": out[0], "pymesos": out[1], "aiohttp": out[2]} if len(out) == 3 else {}


def describe() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    load = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "python310": _python310(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": dirty,
        "load_before": [round(x, 2) for x in load],
    }
