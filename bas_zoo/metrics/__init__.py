"""Streaming metrics: WSOL localization (``WSOLMetrics``) and WSSS pseudo-mask mIoU (``SegMetrics``).

Both keep fixed-size integer state, reduce across processes by a sum (``sync(accelerator)``) and are
also packaged as offline ``evaluate`` modules::

    evaluate.load(bas_zoo.metrics.EVALUATE_MODULES["wsol_localization"])
"""

from pathlib import Path

from .seg import SegMetrics
from .wsol import WSOLMetrics

__all__ = ["EVALUATE_MODULES", "SegMetrics", "WSOLMetrics"]

# local paths for ``evaluate.load`` (work offline: the scripts import their logic from bas_zoo)
EVALUATE_MODULES = {
    name: str(Path(__file__).resolve().parent / name) for name in ("wsol_localization", "wsss_miou")
}
