"""Unit tests of cron parsing, ``next_after`` across DST, ``every()`` and the schedule registry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from kashq import Job, KashqError, NamedJob
from kashq.scheduler import CronExpression, Interval, Schedule, ScheduleError, parse_cron
from kashq.scheduler.recurring import CronTrigger
from kashq.testing import QueueFake

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def runs(cron: CronExpression, start: datetime, count: int) -> list[datetime]:
    found, at = [], start
    for _ in range(count):
        at = cron.next_after(at)
        found.append(at)
    return found


# -- parsing -----------------------------------------------------------------


def test_fields_expand_stars_numbers_ranges_lists_and_steps() -> None:
    cron = parse_cron("1/15 9-17/4 1,15 */3 *")
    assert cron.minutes == (1, 16, 31, 46)
    assert cron.hours == (9, 13, 17)
    assert cron.days == (1, 15)
    assert cron.months == (1, 4, 7, 10)
    assert cron.weekdays == (0, 1, 2, 3, 4, 5, 6)


def test_month_and_weekday_names_are_case_insensitive() -> None:
    cron = parse_cron("0 0 * JAN,jul Mon-Fri")
    assert cron.months == (1, 7)
    assert cron.weekdays == (1, 2, 3, 4, 5)


def test_zero_and_seven_both_mean_sunday() -> None:
    assert parse_cron("0 0 * * 7").weekdays == (0,)
    assert parse_cron("0 0 * * 0").weekdays == (0,)
    assert parse_cron("0 0 * * 5-7").weekdays == (0, 5, 6)


def test_macros_stand_for_their_expressions() -> None:
    assert parse_cron("@daily").next_after(utc(2024, 5, 1, 10)) == utc(2024, 5, 2)
    assert parse_cron("@hourly").next_after(utc(2024, 5, 1, 10, 1)) == utc(2024, 5, 1, 11)
    assert parse_cron("@weekly").next_after(utc(2024, 5, 1)) == utc(2024, 5, 5)  # a Sunday


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("* 24 * * *", "hour value 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("* * * 13 *", "month value 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week value 8 is out of range 0-7"),
        ("*/0 * * * *", "step in the minute field must be at least 1"),
        ("5-1 * * * *", "range '5-1' in the minute field goes backwards"),
        ("x * * * *", "minute value 'x' is not a number"),
        ("1,,2 * * * *", "minute value '' is not a number"),
        ("* * * foo *", "month value 'foo' is not a number or a name"),
        ("* * * * sat-sun", "goes backwards"),
        ("0 0 30 2 *", "day 30 never occurs in feb"),
        ("0 0 31 4,6 *", "day 31 never occurs in apr, jun"),
        ("*/-1 * * * *", "step in the minute field '-1' is not a number"),
    ],
)
def test_bad_expressions_raise_one_line_errors_naming_the_problem(
    expression: str, reason: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_cron(expression)
    message = str(caught.value)
    assert reason in message
    assert f"{' '.join(expression.split())!r}" in message
    assert "\n" not in message
    assert isinstance(caught.value, KashqError)


def test_unknown_time_zone_is_a_schedule_error() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        parse_cron("* * * * *", "Mars/Olympus")


def test_next_after_needs_an_aware_datetime() -> None:
    with pytest.raises(ScheduleError, match="aware"):
        parse_cron("* * * * *").next_after(datetime(2024, 1, 1))


# -- next_after ---------------------------------------------------------------


def test_next_after_is_strictly_later_and_ignores_seconds() -> None:
    cron = parse_cron("*/5 * * * *")
    assert cron.next_after(utc(2024, 1, 1, 12, 0)) == utc(2024, 1, 1, 12, 5)
    assert cron.next_after(utc(2024, 1, 1, 12, 3, 59, 999999)) == utc(2024, 1, 1, 12, 5)
    assert cron.next_after(utc(2024, 1, 1, 23, 58)) == utc(2024, 1, 2, 0, 0)


def test_steps_inside_ranges_on_weekdays() -> None:
    cron = parse_cron("0 9-17/4 * * mon-fri")
    friday_evening = utc(2024, 5, 3, 17, 30)
    assert runs(cron, friday_evening, 4) == [
        utc(2024, 5, 6, 9), utc(2024, 5, 6, 13), utc(2024, 5, 6, 17), utc(2024, 5, 7, 9),
    ]  # fmt: skip


def test_both_day_fields_restricted_means_either_matches() -> None:
    cron = parse_cron("0 0 13 * fri")  # the 13th, and every Friday (Vixie)
    assert runs(cron, utc(2024, 9, 1), 4) == [
        utc(2024, 9, 6), utc(2024, 9, 13), utc(2024, 9, 20), utc(2024, 9, 27),
    ]  # fmt: skip
    assert parse_cron("0 0 13 * 3").next_after(utc(2024, 9, 1)) == utc(2024, 9, 4)


def test_one_day_field_restricted_means_only_that_field_counts() -> None:
    assert parse_cron("0 0 13 * *").next_after(utc(2024, 9, 1)) == utc(2024, 9, 13)
    assert parse_cron("0 0 * * fri").next_after(utc(2024, 9, 1)) == utc(2024, 9, 6)


def test_a_stepped_weekday_field_starting_with_star_still_means_and() -> None:
    # Vixie treats a field starting with "*" as unrestricted for the OR rule:
    # the 1st, and only when it falls on Sun/Tue/Thu/Sat.
    cron = parse_cron("0 0 1 * */2")
    assert cron.next_after(utc(2024, 1, 1)) == utc(2024, 2, 1)  # a Thursday
    assert cron.next_after(utc(2024, 2, 1)) == utc(2024, 6, 1)  # Mar Fri, Apr Mon, May Wed


def test_day_31_skips_shorter_months() -> None:
    cron = parse_cron("0 12 31 * *")
    assert runs(cron, utc(2024, 1, 31, 12), 3) == [
        utc(2024, 3, 31, 12), utc(2024, 5, 31, 12), utc(2024, 7, 31, 12),
    ]  # fmt: skip


def test_leap_day_waits_for_the_next_leap_year() -> None:
    cron = parse_cron("0 0 29 feb *")
    assert cron.next_after(utc(2024, 3, 1)) == utc(2028, 2, 29)
    assert cron.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)  # 2100 is not a leap year


def test_results_are_in_the_expression_zone() -> None:
    cron = parse_cron("0 9 * * *", "Europe/Paris")
    found = cron.next_after(utc(2024, 1, 10, 12))
    assert found.tzinfo == PARIS
    assert found == datetime(2024, 1, 11, 9, tzinfo=PARIS)
    assert found.astimezone(UTC) == utc(2024, 1, 11, 8)


# -- daylight saving time -------------------------------------------------------


def test_wall_time_in_the_spring_gap_is_skipped_new_york() -> None:
    cron = parse_cron("30 2 * * *", "America/New_York")  # 2024-03-10 02:00 -> 03:00
    assert runs(cron, utc(2024, 3, 9, 12), 2) == [
        datetime(2024, 3, 11, 2, 30, tzinfo=NEW_YORK),
        datetime(2024, 3, 12, 2, 30, tzinfo=NEW_YORK),
    ]


def test_wall_time_in_the_spring_gap_is_skipped_paris() -> None:
    cron = parse_cron("30 2 * * *", "Europe/Paris")  # 2024-03-31 02:00 -> 03:00
    before = datetime(2024, 3, 30, 3, tzinfo=PARIS)
    assert cron.next_after(before) == datetime(2024, 4, 1, 2, 30, tzinfo=PARIS)


def test_every_minute_jumps_the_gap_without_a_pause_in_real_time() -> None:
    cron = parse_cron("* * * * *", "America/New_York")
    before = datetime(2024, 3, 10, 1, 59, tzinfo=NEW_YORK)
    found = cron.next_after(before)
    assert (found.hour, found.minute) == (3, 0)
    assert found.astimezone(UTC) - before.astimezone(UTC) == timedelta(minutes=1)


def test_ambiguous_wall_time_fires_once_new_york() -> None:
    cron = parse_cron("30 1 * * *", "America/New_York")  # 2024-11-03 01:00-02:00 twice
    first, second = runs(cron, utc(2024, 11, 2, 12), 2)
    assert first.astimezone(UTC) == utc(2024, 11, 3, 5, 30)  # 01:30 EDT, the first pass
    assert second.astimezone(UTC) == utc(2024, 11, 4, 6, 30)  # next day 01:30 EST


def test_ambiguous_hour_is_not_repeated_paris() -> None:
    cron = parse_cron("*/30 * * * *", "Europe/Paris")  # 2024-10-27 03:00 CEST -> 02:00 CET
    start = datetime(2024, 10, 27, 1, 45, tzinfo=PARIS)
    found = [moment.astimezone(UTC) for moment in runs(cron, start, 4)]
    assert found == [
        utc(2024, 10, 27, 0, 0),  # 02:00 CEST
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 2, 0),  # 03:00 CET: 02:00 and 02:30 CET are not fired again
        utc(2024, 10, 27, 2, 30),
    ]


def test_starting_inside_the_repeated_hour_goes_on_after_it() -> None:
    cron = parse_cron("*/15 * * * *", "America/New_York")
    second_pass = utc(2024, 11, 3, 6, 10)  # 01:10 EST, the repeated 01:10
    assert cron.next_after(second_pass).astimezone(UTC) == utc(2024, 11, 3, 7, 0)  # 02:00 EST


# -- every() and triggers -------------------------------------------------------


def test_interval_ticks_on_multiples_of_the_period() -> None:
    every_5m = Interval(300)
    at = utc(2024, 1, 1, 12, 3).timestamp()
    assert every_5m.next_after(at) == utc(2024, 1, 1, 12, 5).timestamp()
    assert every_5m.next_after(at + 120) == utc(2024, 1, 1, 12, 10).timestamp()


def test_latest_due_returns_only_the_latest_missed_tick_and_counts_the_rest() -> None:
    every_10s = Interval(10)
    assert every_10s.latest_due(100.0, 105.0) is None
    assert every_10s.latest_due(100.0, 110.0) == (110.0, 0)
    assert every_10s.latest_due(100.0, 145.5) == (140.0, 3)
    hourly = CronTrigger(parse_cron("0 * * * *"))
    after = utc(2024, 1, 1, 10).timestamp()
    assert hourly.latest_due(after, utc(2024, 1, 1, 10, 59).timestamp()) is None
    assert hourly.latest_due(after, utc(2024, 1, 1, 13, 5).timestamp()) == (
        utc(2024, 1, 1, 13).timestamp(),
        2,
    )


def test_every_builds_whole_second_periods_and_names_them() -> None:
    registry = Schedule()
    assert registry.every(seconds=30).call(print).expression == "every 30s"
    assert registry.every(minutes=5).name("b").call(print).period_s == 300
    assert registry.every(hours=1, minutes=30).name("c").call(print).expression == "every 90m"
    assert registry.every(hours=2).name("d").call(print).expression == "every 2h"


@pytest.mark.parametrize("kwargs", [{}, {"seconds": 0}, {"seconds": 1.5}, {"minutes": -1}])
def test_every_refuses_periods_that_are_not_whole_positive_seconds(
    kwargs: dict[str, float],
) -> None:
    with pytest.raises(ScheduleError, match="whole seconds"):
        Schedule().every(**kwargs)  # type: ignore[arg-type]


# -- the registry -----------------------------------------------------------------


class Ping(Job):
    target: str

    def handle(self) -> None:
        pass


def test_decorator_registers_the_function_and_returns_it_unchanged() -> None:
    registry = Schedule()

    @registry.cron("*/5 * * * *", tz="Europe/Paris")
    def tick() -> str:
        return "ticked"

    assert tick() == "ticked"
    (entry,) = registry.entries()
    assert entry.name.endswith("tick")
    assert (entry.expression, entry.timezone, entry.function) == (
        "*/5 * * * *",
        "Europe/Paris",
        tick,
    )


def test_dispatch_entries_dispatch_a_fresh_copy_of_the_job_each_tick() -> None:
    registry = Schedule()
    job = Ping(target="a").on_queue("pings")
    entry = registry.every(seconds=30).dispatch(job)
    job.target = "changed after registration"
    fake = QueueFake()
    ids = {entry.run(fake), entry.run(fake)}
    assert len(ids) == 2
    first, second = (record.job for record in fake.records)
    assert first is not second and first is not job
    assert [r.envelope.queue for r in fake.records] == ["pings", "pings"]
    assert [r.envelope.payload for r in fake.records] == [{"target": "a"}, {"target": "a"}]
    assert entry.name == f"{Ping.__kashq_name__} every 30s"


def test_dispatch_entries_go_to_the_runner_connection_unless_the_job_names_one() -> None:
    registry = Schedule()
    plain = registry.every(seconds=1).dispatch(NamedJob("ping", {}))
    pinned = registry.every(seconds=1).dispatch(NamedJob("pong", {}).on_connection("redis"))
    fake = QueueFake()
    plain.run(fake, "database")
    pinned.run(fake, "database")
    assert [r.job.target_connection() for r in fake.records] == ["database", "redis"]


def test_names_must_be_unique_and_usable_in_lock_keys() -> None:
    registry = Schedule()
    registry.every(seconds=5).name("heartbeat").call(print)
    with pytest.raises(ScheduleError, match="already exists"):
        registry.cron("* * * * *", name="heartbeat").call(print)
    with pytest.raises(ScheduleError, match="braces"):
        registry.every(seconds=5).name("a{b}")
    with pytest.raises(ScheduleError, match="braces"):
        registry.every(seconds=5, name="")
    assert [e.name for e in registry.entries()] == ["heartbeat"]


def test_bad_cron_is_refused_when_declared() -> None:
    with pytest.raises(ScheduleError, match="out of range"):
        Schedule().cron("61 * * * *")
    with pytest.raises(ScheduleError, match="not every"):
        Schedule().every(seconds=5).timezone("Europe/Paris")


def test_entries_keep_registration_order_and_can_be_removed() -> None:
    registry = Schedule()
    for name in ("c", "a", "b"):
        registry.every(seconds=1).name(name).call(print)
    assert [e.name for e in registry] == ["c", "a", "b"]
    assert registry.remove("a") and not registry.remove("a")
    assert len(registry) == 2
    registry.clear()
    assert registry.entries() == []


def test_cron_entry_without_zone_reads_times_in_the_default_zone() -> None:
    entry = Schedule().cron("0 9 * * *").call(print)
    paris = entry.trigger("Europe/Paris").next_after(utc(2024, 1, 10, 12).timestamp())
    assert paris == utc(2024, 1, 11, 8).timestamp()
    assert entry.zone_name("Europe/Paris") == "Europe/Paris"
