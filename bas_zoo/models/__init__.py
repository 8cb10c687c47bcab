"""BAS models; importing this package registers every entrypoint with timm."""

from . import efficientnet, generic, inception_v3, mobilenetv1, resnet, vgg  # noqa: F401  (registration)
from ._bas import BASModel, BASOutput, normalize_maps
from .generic import create_bas_model

__all__ = ["BASModel", "BASOutput", "create_bas_model", "normalize_maps"]
