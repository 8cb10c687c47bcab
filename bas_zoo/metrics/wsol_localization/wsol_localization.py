"""WSOL localization metrics (Top-1 / Top-5 / GT-known Loc, MaxBoxAcc V1 / V2, PxAP, PIoU) for `evaluate`.

A thin wrapper: the logic lives in ``bas_zoo.metrics.WSOLMetrics`` (streaming, fixed-size state),
so this script works offline with ``evaluate.load("<path to this folder>")``.
"""

import datasets
import evaluate
import numpy as np

from bas_zoo.metrics import WSOLMetrics

_DESCRIPTION = """\
Weakly supervised object localization metrics computed from localization maps and ground-truth
boxes. GT-known / Top-1 / Top-5 Loc follow the official BAS code (threshold ``loc_threshold``,
largest 8-connected component); MaxBoxAcc (V1: largest contour at IoU 0.5; V2: all contours,
averaged over IoU 0.3 / 0.5 / 0.7) and PxAP follow clovaai/wsolevaluation exactly. Values in percent.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of (H, W) localization maps (raw scores, any range).
    references: list of (N_i, 4) ground-truth boxes, inclusive [x0, y0, x1, y1] pixels of the map.
    gt_masks: optional list of (H, W) masks (bool, or 0 / 1 with 255 = ignore) -> PxAP, PIoU.
    ignore_masks: optional list of (H, W) bool masks of pixels left out of PxAP / PIoU.
    logits: optional (N, C) class scores and labels: (N,) classes -> Top-1 / Top-5 Loc.
    cam_curve_interval: CAM threshold spacing (default 0.01).
    iou_thresholds: IoU thresholds (percent) of MaxBoxAccV2 (default (30, 50, 70)).
    loc_threshold: map threshold of GT-known Loc (default 0.15).
    loc_iou_strict: GT-known hit at IoU > 0.5 instead of >= 0.5 (default False).
Returns:
    dict with gt_known_loc, maxboxacc_v1, maxboxacc_v2, maxboxacc_v2@30/50/70, best thresholds, and
    top1_loc / top5_loc / top1_cls / top5_cls, pxap / piou when their inputs are given.
Examples:
    >>> metric = evaluate.load("bas_zoo/metrics/wsol_localization")
    >>> metric.compute(predictions=[m], references=[[[10, 10, 50, 60]]])
"""

_CITATION = """\
@inproceedings{wu2022bas,
  title={Background Activation Suppression for Weakly Supervised Object Localization},
  author={Wu, Pingyu and Zhai, Wei and Cao, Yang},
  booktitle={CVPR}, year={2022}}
@inproceedings{choe2020wsol,
  title={Evaluating Weakly Supervised Object Localization Methods Right},
  author={Choe, Junsuk and Oh, Seong Joon and Lee, Seungho and Chun, Sanghyuk and Akata, Zeynep and Shim, Hyunjung},
  booktitle={CVPR}, year={2020}}
"""


def _stack(items):
    return None if items is None else np.stack([np.asarray(x) for x in items])


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WsolLocalization(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                }
            ),
            reference_urls=["https://github.com/wpy1999/BAS", "https://github.com/clovaai/wsolevaluation"],
        )

    def _compute(
        self,
        predictions,
        references,
        gt_masks=None,
        ignore_masks=None,
        logits=None,
        labels=None,
        cam_curve_interval=0.01,
        iou_thresholds=(30, 50, 70),
        loc_threshold=0.15,
        loc_iou_strict=False,
    ):
        metric = WSOLMetrics(
            cam_curve_interval=cam_curve_interval,
            iou_thresholds=iou_thresholds,
            loc_threshold=loc_threshold,
            loc_iou_strict=loc_iou_strict,
        )
        maps = _stack(predictions).astype(np.float32)
        boxes = [np.asarray(list(b), dtype=np.float64).reshape(-1, 4) for b in references]
        metric.update(
            maps,
            boxes,
            gt_masks=_stack(gt_masks),
            ignore_masks=_stack(ignore_masks),
            logits=None if logits is None else np.asarray(logits),
            labels=None if labels is None else np.asarray(labels),
        )
        return metric.compute()
