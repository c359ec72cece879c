"""Execute a plan: the only stage that changes a registry, and only as the plan says.

Per repository, right before acting, the repository is listed once more and
`retention.agreement` decides which planned actions still hold: when nothing
the plan leaves standing has changed, each item is checked on its own (its
tags, last update and locks); when something has, the repository is read
whole and planned again with the plan's policy, and only the actions both
plans contain run. The rest are `drifted`, with the reason. Then, in this
order: deletes of parents, deletes of their dependents (a child never before
its index, an attachment never before its subject, and never at all when a
parent was not deleted), and last the property changes, sending only the keys
that still differ.

A delete that needs an unlock is one step: once its unlock is sent, the delete
follows even after SIGINT/SIGTERM, and when the delete fails (refused, 401/403,
anything) the locks the plan saw are put back before the run ends. A rerun of
the same plan finds an unlock its earlier run made (fewer locks than planned)
and completes the delete.

A failed item does not stop the run; 401/403 does, at once. Every planned
action ends with exactly one record. Writing goes through a `Writer` (the SDK
adapter in production); this module imports nothing from Azure.
"""

from retention.executor.repository import execute, execute_parts
from retention.executor.run import STOPPED, Execution, Limits, Outcome, Record, StoppedError, Writer

__all__ = [
    "STOPPED",
    "Execution",
    "Limits",
    "Outcome",
    "Record",
    "StoppedError",
    "Writer",
    "execute",
    "execute_parts",
]
