"""The service layer: every API operation over storage, registry and projection."""

from ..projection import CHOICES as RENDER_CHOICES
from ..projection import RenderOptions
from .core import HINT_MODES, VIEWS, BundleBody, Service, TypeHint

__all__ = ["HINT_MODES", "RENDER_CHOICES", "VIEWS", "BundleBody", "RenderOptions", "Service", "TypeHint"]
