"""Failed jobs: kashq's dead letters, where they are kept, and how they are reached.

A job *fails for good* when it will not be tried again: its tries are used
up, or another attempt cannot succeed (its envelope cannot be decoded, its
type is unknown, its payload is invalid, its workers died with it more than
``max_deliveries`` times). The worker then calls its ``failed()`` hook,
records it as a :class:`FailedJob` (the full envelope, the error, the
traceback) and acknowledges it. Those records are kashq's *dead-letter queue*; "failed job"
and "dead letter" name the same thing.

**Where.** In the failed-job store of the job's connection
(:meth:`kashq.QueueManager.failed_store`): the ``failed_jobs`` table at
``KASHQ_DATABASE_URL`` (:mod:`kashq.failed.database`) for the database, redis
and sharded connections, so a failure outlives the process; a
:class:`MemoryFailedJobStore` for memory and sync. Each implements
:class:`FailedJobStore` (:mod:`kashq.failed.base`). A failure is never
dropped: while the store cannot be written, the job is parked with its driver
and recorded once the store is back.

**From code.** :class:`kashq.dlq.DeadLetterQueue` lists, counts, retries,
forgets and alerts on them; ``kashq.failed_jobs()`` is the current manager's
bare store.

**From the shell.** ``kashq queue:failed`` and ``queue:failed:show`` list them,
``queue:retry`` pushes them back, ``queue:forget``, ``queue:flush`` and
``queue:prune-failed`` delete them (:mod:`kashq.cli.failed`).

A retry, from code or the shell, pushes the stored envelope back onto its
connection with the same job id and its attempts reset, and only then
forgets the record: a crash in between leaves a duplicate, never a lost job.
"""

from kashq.failed.base import FailedFilter, FailedJob, FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore

__all__ = ["FailedFilter", "FailedJob", "FailedJobStore", "MemoryFailedJobStore"]
