"""Scheduling: delayed jobs (GoFlow's ``schedule_at``/``schedule_in``) and recurring schedules.

    from kashq.scheduler import Scheduler, schedule

    Scheduler().schedule_in(SendReminder(user_id=1), timedelta(hours=1))
    schedule.every(minutes=5).dispatch(PruneCache())
    schedule.cron("0 3 * * *", tz="Europe/Paris").name("nightly-report").dispatch(Report())

``kashq schedule:work`` fires the recurring schedules (each tick once, however
many runners); ``kashq schedule:list`` shows them with their next runs.
"""

from __future__ import annotations

from kashq.scheduler.cron import CronExpression, ScheduleError, parse_cron
from kashq.scheduler.delayed import Scheduler
from kashq.scheduler.recurring import (
    CronTrigger,
    Interval,
    PendingEntry,
    Schedule,
    ScheduleEntry,
    Trigger,
    schedule,
)
from kashq.scheduler.runner import (
    LOCK_MARGIN_S,
    Fired,
    SchedulerProcess,
    ScheduleRunner,
    run_scheduler,
)

__all__ = [
    "LOCK_MARGIN_S",
    "CronExpression",
    "CronTrigger",
    "Fired",
    "Interval",
    "PendingEntry",
    "Schedule",
    "ScheduleEntry",
    "ScheduleError",
    "ScheduleRunner",
    "Scheduler",
    "SchedulerProcess",
    "Trigger",
    "parse_cron",
    "run_scheduler",
    "schedule",
]
