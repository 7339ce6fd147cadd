"""The HTTP gateway: thin aiohttp handlers over the service layer."""

from .app import create_app

__all__ = ["create_app"]
