"""Projection: JSON to tagged msgpack values and back, against type descriptors. Pure."""

from .encode import Lookup, encode_typed
from .options import CHOICES, RenderOptions
from .project import Projection, project
from .render import render_generic

__all__ = ["CHOICES", "Lookup", "Projection", "RenderOptions", "encode_typed", "project", "render_generic"]
