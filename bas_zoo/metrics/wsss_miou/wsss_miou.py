"""WSSS pseudo-mask mIoU over a background-threshold sweep for `evaluate`.

A thin wrapper around ``bas_zoo.metrics.SegMetrics`` so it loads offline with
``evaluate.load("<path to this folder>")``.
"""

import datasets
import evaluate
import numpy as np

from bas_zoo.metrics import SegMetrics

_DESCRIPTION = """\
Mean IoU of pseudo segmentation masks built from per-class foreground scores in [0, 1]: a pixel takes
its best present class when that score beats the background threshold, else background. The best
mIoU over the swept thresholds (BAS journal: 0.20-0.44) is reported, in percent.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of (C, H, W) foreground class scores in [0, 1].
    references: list of (H, W) int labels (0 = background, 1..C classes, 255 ignored).
    num_classes: number of foreground classes C (required).
    present_classes: optional (N, C) bool image-level labels restricting the competing classes.
    bg_thresholds: background thresholds to sweep (default arange(0.20, 0.45, 0.01)).
    ignore_index: ignored label (default 255).
Returns:
    dict: miou, best_bg_threshold, per_class_iou (list, background first), miou_curve (list).
Examples:
    >>> metric = evaluate.load("bas_zoo/metrics/wsss_miou")
    >>> metric.compute(predictions=[scores], references=[labels], num_classes=20)
"""

_CITATION = """\
@article{wu2023bas,
  title={Background Activation Suppression for Weakly Supervised Object Localization and Semantic Segmentation},
  author={Wu, Wei and Zhai, Wei and Cao, Yang and others},
  journal={IJCV}, year={2023}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WsssMiou(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(
                        datasets.Sequence(datasets.Sequence(datasets.Value("float32")))
                    ),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("int64"))),
                }
            ),
            reference_urls=["https://github.com/wpy1999/BAS-Extension"],
        )

    def _compute(
        self,
        predictions,
        references,
        num_classes=None,
        present_classes=None,
        bg_thresholds=None,
        ignore_index=255,
    ):
        if num_classes is None:
            raise ValueError("wsss_miou needs num_classes=<number of foreground classes>")
        kwargs = {} if bg_thresholds is None else {"bg_thresholds": bg_thresholds}
        metric = SegMetrics(num_classes, ignore_index=ignore_index, **kwargs)
        scores = np.stack([np.asarray(p, dtype=np.float32) for p in predictions])
        gt = np.stack([np.asarray(r, dtype=np.int64) for r in references])
        present = None if present_classes is None else np.asarray(present_classes, dtype=bool)
        metric.update(scores, present, gt)
        return metric.compute()
