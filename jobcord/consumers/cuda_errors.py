"""CUDA errors that poison a process's CUDA context.

After an illegal memory access, a device-side assert or a launch failure, every later CUDA
call in the same process fails too ("sticky" errors): the only cure is a new process. The child
reports such a failure and its slot replaces it, so one bad request does not fail every
request after it on that GPU.
"""

from __future__ import annotations

import re

__all__ = ["poisons_cuda_context"]

_STICKY = re.compile(
    r"illegal memory access|device-side assert|unspecified launch failure|"
    r"illegal instruction|misaligned address|uncorrectable ECC error|"
    r"CUDA error: an illegal|cudaErrorLaunchFailure|cudaErrorIllegalAddress|"
    r"CUBLAS_STATUS_EXECUTION_FAILED|CUDA driver error: unknown error",
    re.IGNORECASE,
)


def poisons_cuda_context(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a sticky CUDA error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _STICKY.search(f"{type(current).__name__}: {current}"):
            return True
        current = current.__cause__ or current.__context__
    return False
