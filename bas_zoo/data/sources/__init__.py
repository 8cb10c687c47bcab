"""Readers for the raw dataset layouts, each returning one split in the common schema (see schema.py).

One module per layout (its docstring describes the folder it expects):

- ``cub``: the official CUB_200_2011 folder;
- ``wsolevaluation``: clovaai/wsolevaluation metadata for CUB, ILSVRC and OpenImages;
- ``ilsvrc``: ImageNet with its localization XML;
- ``voc``: PASCAL VOC 2012 segmentation as multi-label data;
- ``imagefolder``: ``<split>/metadata.jsonl`` folders with boxes.

Every reader raises :class:`bas_zoo.data.DatasetFormatError` naming the file, the line and the fix.
"""

from .cub import load_cub
from .ilsvrc import load_ilsvrc
from .imagefolder import load_imagefolder
from .voc import VOC_CLASSES, load_voc
from .wsolevaluation import load_wsolevaluation

__all__ = ["load_cub", "load_wsolevaluation", "load_ilsvrc", "load_voc", "load_imagefolder", "VOC_CLASSES"]
