"""``load_wsol_dataset(spec, split)``: one entry point from a dataset spec to the common schema.

Spec grammar (the prefix before the first ``:`` picks the reader)::

    synthetic[:key=value,...]                   generated locally (bas_zoo.data.synthetic)
    cub:DIR                                     official CUB_200_2011 folder
    wsolevaluation:METADATA_DIR:DATA_DIR:NAME   clovaai/wsolevaluation metadata, NAME in CUB|ILSVRC|OpenImages
    ilsvrc:DIR                                  ImageNet + localization XML
    voc:DIR                                     PASCAL VOC 2012 segmentation (multi-label)
    imagefolder:DIR                             DIR/<split>/metadata.jsonl
    anything else                               a Hub dataset id, or a local folder (save_to_disk output or
                                                data files) read by datasets; map its columns with
                                                ``columns`` / ``--columns image=img,bboxes=objects.bbox``

The layouts are described in :mod:`bas_zoo.data.sources`, the schema in :mod:`bas_zoo.data.schema`.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from .schema import REQUIRED_COLUMNS, DatasetFormatError, box_feature, parse_columns, parse_options
from .sources import load_cub, load_ilsvrc, load_imagefolder, load_voc, load_wsolevaluation

__all__ = ["load_wsol_dataset", "conform_columns", "LOCAL_PREFIXES"]

LOCAL_PREFIXES = ("synthetic", "cub", "wsolevaluation", "ilsvrc", "voc", "imagefolder")
OPTIONAL_COLUMNS = ("labels", "bbox_labels", "mask", "image_id")


def load_wsol_dataset(
    spec: str,
    split: str,
    columns: dict | str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Load ``split`` of the dataset named by ``spec`` in the common schema.

    ``columns`` maps schema names to source columns for Hub / local ``datasets`` data (a dict or the
    ``"image=img,bboxes=bbox"`` string form; the extra key ``box_format=xywh`` converts COCO-style boxes).
    ``cache_dir`` is where generated or slow-to-parse datasets are cached (default ``~/.cache/bas_zoo``;
    for Hub datasets it is passed to ``datasets.load_dataset``).
    """
    prefix, _, rest = spec.partition(":")
    if columns and prefix in LOCAL_PREFIXES:
        raise ValueError(
            f"A column mapping applies to Hub / datasets folders only, not to {prefix}: specs; drop --columns."
        )
    if prefix == "synthetic":
        from .synthetic import make_synthetic

        dataset_dict = make_synthetic(**parse_options(rest, "synthetic option"), cache_dir=cache_dir)
        if split not in dataset_dict:
            raise DatasetFormatError(f"Unknown split {split!r} for {spec}; available: {list(dataset_dict)}.")
        return dataset_dict[split]
    if prefix in LOCAL_PREFIXES:
        if not rest:
            raise ValueError(f"Dataset spec {spec!r} needs a path: {_usage(prefix)}.")
        if prefix == "cub":
            return load_cub(rest, split)
        if prefix == "ilsvrc":
            return load_ilsvrc(rest, split, cache_dir=cache_dir)
        if prefix == "voc":
            return load_voc(rest, split, cache_dir=cache_dir)
        if prefix == "imagefolder":
            return load_imagefolder(rest, split)
        parts = rest.rsplit(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"Dataset spec {spec!r} is malformed; expected {_usage(prefix)}.")
        return load_wsolevaluation(*parts, split=split, cache_dir=cache_dir)
    return _load_datasets(spec, split, parse_columns(columns), cache_dir)


def _usage(prefix: str) -> str:
    if prefix == "wsolevaluation":
        return "wsolevaluation:METADATA_DIR:DATA_DIR:NAME (NAME in CUB, ILSVRC, OpenImages)"
    return f"{prefix}:DIR"


def _load_datasets(spec: str, split: str, columns: dict[str, str], cache_dir) -> datasets.Dataset:
    """A Hub id or local folder through ``datasets``; ``save_to_disk`` folders are read back directly.

    Only the requested split is loaded from the Hub. Labels that are not a ``ClassLabel`` are encoded
    from the splits at hand (every split of a saved DatasetDict, else this split): give the source a
    ClassLabel when other splits may hold other classes.
    """
    path = Path(spec).expanduser()
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DatasetFormatError(f"Unknown split {split!r} for {spec}; available: {list(loaded)}.")
            return conform_columns(loaded[split], columns, spec, split, all_splits=loaded)
        return conform_columns(loaded, columns, spec, split)
    try:
        ds = datasets.load_dataset(spec, split=split, cache_dir=None if cache_dir is None else str(cache_dir))
    except FileNotFoundError as err:
        raise DatasetFormatError(
            f"Dataset {spec!r} not found: not a known prefix ({', '.join(p + ':' for p in LOCAL_PREFIXES)}), "
            f"not a local folder and not reachable on the Hub ({err})."
        ) from err
    except ValueError as err:
        if "split" in str(err).lower():
            raise DatasetFormatError(f"Unknown split {split!r} for {spec}: {err}") from err
        raise
    return conform_columns(ds, columns, spec, split)


def conform_columns(
    ds: datasets.Dataset,
    columns: dict[str, str] | str | None,
    source: str = "dataset",
    split: str = "",
    all_splits: datasets.DatasetDict | None = None,
) -> datasets.Dataset:
    """Rename mapped columns to the schema names, check them and cast ``label`` / ``bboxes``."""
    mapping = parse_columns(columns)
    box_format = mapping.pop("box_format", "xyxy").lower()
    if box_format not in ("xyxy", "xywh"):
        raise ValueError(f"box_format must be xyxy or xywh, got {box_format!r}.")
    unknown = sorted(set(mapping) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if unknown:
        raise ValueError(f"Unknown schema columns {unknown} in the column mapping; known: "
                         f"{list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)} and box_format.")  # fmt: skip
    if any("." in src and src not in ds.column_names for src in mapping.values()):
        ds = ds.flatten()  # nested fields such as objects.bbox become top-level columns
    for target in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        src = mapping.get(target, target)
        if src not in ds.column_names and (target in REQUIRED_COLUMNS or target in mapping):
            raise DatasetFormatError(
                f"{source} (split {split!r}) has no column {src!r} for {target!r}. Available columns: "
                f"{ds.column_names}. Map it with --columns {target}=<column> "
                f"(Python: columns={{'{target}': '<column>'}})."
            )
    renames = {
        mapping.get(t, t): t
        for t in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
        if mapping.get(t, t) in ds.column_names
    }
    clashes = [t for s, t in renames.items() if s != t and t in ds.column_names and t not in renames]
    ds = ds.remove_columns(clashes).rename_columns({s: t for s, t in renames.items() if s != t})
    ds = ds.select_columns([c for c in ("image", "label", "labels", "bboxes", "bbox_labels", "mask", "image_id")
                            if c in ds.column_names])  # fmt: skip
    if not isinstance(ds.features["image"], datasets.Image):
        raise DatasetFormatError(f"{source}: column 'image' is {ds.features['image']}, not an Image feature.")
    if "mask" in ds.column_names and not isinstance(ds.features["mask"], datasets.Image):
        raise DatasetFormatError(f"{source}: column 'mask' is {ds.features['mask']}, not an Image feature.")
    ds = _class_label(ds, all_splits, mapping.get("label", "label"))
    if box_format == "xywh":
        ds = ds.map(_xywh_to_xyxy, input_columns="bboxes", desc="xywh -> xyxy")
    ds = ds.cast_column("bboxes", box_feature())
    if "image_id" not in ds.column_names:
        ds = ds.add_column("image_id", [str(i) for i in range(len(ds))])
    elif ds.features["image_id"] != datasets.Value("string"):
        ds = ds.cast_column("image_id", datasets.Value("string"))
    return ds


def _xywh_to_xyxy(boxes: list) -> dict:
    return {"bboxes": [[x, y, x + w, y + h] for x, y, w, h in boxes]}


def _class_label(
    ds: datasets.Dataset, all_splits: datasets.DatasetDict | None, source_name: str
) -> datasets.Dataset:
    """Make ``label`` a ClassLabel: names from every split so that indices agree across splits."""
    feature = ds.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return ds
    pools = [d.unique(source_name) for d in (all_splits or {}).values() if source_name in d.column_names]
    values = sorted(
        {v for pool in (pools or [ds.unique("label")]) for v in pool}, key=lambda v: (isinstance(v, str), v)
    )
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if values and values[0] < 0:
            raise DatasetFormatError(f"Column 'label' has negative class index {values[0]}.")
        names = [str(i) for i in range(max(values, default=-1) + 1)]
        return ds.cast_column("label", datasets.ClassLabel(names=names))
    if not all(isinstance(v, str) for v in values):
        raise DatasetFormatError("Column 'label' must hold class names or integer indices.")
    lookup = {v: i for i, v in enumerate(values)}
    ds = ds.map(lambda v: {"label": lookup[v]}, input_columns="label", desc="encode labels")
    return ds.cast_column("label", datasets.ClassLabel(names=values))
