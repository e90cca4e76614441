"""The async image job id rule, shared by ``serve``, the gateway and the worker.

A job id travels in a URL path (``GET /v1/async/jobs/{job_id}``) on every hop (client → ``serve``
→ gateway → worker), so each hop accepts only ids of 1 to 128 characters from ``A-Z a-z 0-9 _ -``
(the worker issues ``imgjob_<24 hex>``) and answers 404 in its own shape for anything else, before
any lookup or forwarding: a newline, ``/``, ``%`` or ``..`` never reaches a URL or a log line.
"""

from __future__ import annotations

import re

__all__ = ["JOB_ID_PATTERN", "is_valid_job_id"]

#: The accepted job ids.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_valid_job_id(job_id: object) -> bool:
    """Whether ``job_id`` (a path parameter) is a well-formed job id (:data:`JOB_ID_PATTERN`)."""
    return isinstance(job_id, str) and JOB_ID_PATTERN.fullmatch(job_id) is not None
