"""graphc.cuda: GPU availability (the Triton backend is a later issue)."""
from ..device import cuda_is_available as is_available  # noqa: F401


def device_count() -> int:
    return 1 if is_available() else 0
