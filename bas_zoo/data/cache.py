"""On-disk caching of built datasets: hash the options, build once, reload memory-mapped afterwards.

Writes are atomic: a dataset is saved into a temporary folder next to its final place and renamed,
so an interrupted build or two processes building at once never leave a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import datasets

__all__ = ["default_cache_root", "options_hash", "cached_build"]


def default_cache_root() -> Path:
    """``$BAS_ZOO_CACHE`` or ``~/.cache/bas_zoo``."""
    return Path(os.environ.get("BAS_ZOO_CACHE", Path.home() / ".cache" / "bas_zoo")).expanduser()


def options_hash(options: dict) -> str:
    """Stable short hash of a JSON-serializable options dict (key order does not matter)."""
    blob = json.dumps(options, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_build(
    kind: str,
    options: dict,
    build: Callable[[], datasets.Dataset | datasets.DatasetDict],
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """Return the dataset cached under ``<cache_dir>/<kind>/<hash(options)>``, building it if absent.

    ``cache_dir`` defaults to :func:`default_cache_root`.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    final = root / kind / options_hash(options)
    if not _complete(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            build().save_to_disk(str(tmp / "data"))
            (tmp / "options.json").write_text(json.dumps(options, sort_keys=True, indent=1, default=str))
            try:
                os.rename(tmp, final)
            except OSError:
                if not _complete(final):  # not a lost race: a broken leftover is in the way
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(final / "data"))


def _complete(path: Path) -> bool:
    data = path / "data"
    return (data / "dataset_dict.json").is_file() or (data / "state.json").is_file()
