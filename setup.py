"""Packaging: the top-level folders install as sub-packages of ``scale_scheduler``."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
FOLDERS = ("daemon", "api", "state", "simulator")


def _packages() -> dict[str, str]:
    """Map every package under each folder to ``scale_scheduler.<folder>[.sub]``."""
    mapping: dict[str, str] = {}
    for folder in FOLDERS:
        for init in sorted((HERE / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(HERE)
            mapping["scale_scheduler." + ".".join(rel.parts)] = rel.as_posix()
    return mapping


PACKAGE_DIR = _packages()

setup(
    name="scale-scheduler",
    version="0.1.0",
    description="A Mesos framework scheduler daemon with an embedded REST API",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=sorted(PACKAGE_DIR),
    package_dir=PACKAGE_DIR,
    package_data={name: ["py.typed", "*.html", "*.css", "*.js", "*.json"] for name in PACKAGE_DIR},
    install_requires=[
        "aiohttp>=3.9",
        "aiosqlite>=0.20",
        # The PostgreSQL state backend (state/postgres/).
        "asyncpg>=0.29",
        "structlog>=24.1",
        "msgspec>=0.18",
        "PyYAML>=6.0",
        "kazoo>=2.10",
        "prometheus-client>=0.20",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-aiohttp>=1.0",
            "pytest-asyncio>=0.23",
            "pytest-timeout>=2.3",
            # Dashboard browser tests: drive Debian's chromium, never `playwright install`.
            "playwright>=1.40",
            # API fuzzing against /openapi.json (tests/security); needs Python 3.11+.
            "schemathesis>=4.32,<5; python_version >= '3.11'",
            "ruff>=0.6",
            # Type checking (make typecheck); the exact versions CI uses are in constraints.txt.
            "mypy>=1.10; python_version >= '3.11'",
            "types-PyYAML",
        ],
        "pymesos": ["pymesos==0.3.15; python_version < '3.11'"],
    },
    entry_points={"console_scripts": ["scale-scheduler=scale_scheduler.daemon.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: AsyncIO",
        "Operating System :: POSIX :: Linux",
    ],
)
