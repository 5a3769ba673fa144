"""graphc.utils: data loading (graphc.utils.data)."""
from . import data  # noqa: F401
