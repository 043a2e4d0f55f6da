"""Fault injection for the cluster's tests: a process SIGKILLs itself at a named point.

``PYX_CLUSTER_FAULT`` names the point; the process kills itself the first time
it reaches it. Engine points: ``xfer-out-applied``, ``xfer-in-stored``,
``xfer-done-stored``, ``xfer-in-applied`` (node.py); gateway point:
``gateway-stored`` (backend.py: a command batch stored by the quorum, not yet
answered to its client). Unset in any real deployment.
"""

from __future__ import annotations

import logging
import os
import signal

FAULT = os.environ.get("PYX_CLUSTER_FAULT", "")


def fault(point: str) -> None:
    if point == FAULT:
        logging.getLogger(__name__).warning("fault injection: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)
