"""bas_zoo: Background Activation Suppression on any timm backbone.

Importing the package registers every BAS model with timm.
"""

__version__ = "0.1.0"

from . import data, metrics, wsss
from .defaults import PaperDefaults, paper_defaults
from .hub import build_model_card, push_to_hub, save_pretrained
from .localize import boxes_from_map, mask_from_map, normalize_map
from .losses import BASLoss, BASMultiLabelLoss
from .models import BASModel, BASOutput, create_bas_model, normalize_maps
from .pipeline import LocalizationPipeline, overlay, pipeline, register_transformers_pipeline
