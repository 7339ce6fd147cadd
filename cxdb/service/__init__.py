"""The service layer: every API operation over storage, registry and projection."""

from ..portable import BadExport, Selection
from ..projection import CHOICES as RENDER_CHOICES
from ..projection import RenderOptions
from ..projection.strings import MAX_STRING_LIMIT
from .appends import TurnInput
from .core import HINT_MODES, VIEWS, BundleBody, Service, TypeHint

__all__ = ["HINT_MODES", "MAX_STRING_LIMIT", "RENDER_CHOICES", "VIEWS", "BadExport", "BundleBody", "RenderOptions",
           "Selection", "Service", "TurnInput", "TypeHint"]
