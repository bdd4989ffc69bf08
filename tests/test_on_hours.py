from datetime import datetime

import pytest

from coderig.on_hours import DAYS_PER_MONTH, Schedule

# 2026-11-23 is a Monday.
MON = datetime(2026, 11, 23)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MON.replace(day=23 + day, hour=hour, minute=minute)


def test_office_hours_are_active_only_on_weekdays_inside_the_window():
    schedule = Schedule.parse("mon-fri 08:00-19:00")
    assert schedule.is_active(at(0, 8))
    assert schedule.is_active(at(4, 18, 59))
    assert not schedule.is_active(at(0, 7, 59))
    assert not schedule.is_active(at(2, 19))
    assert not schedule.is_active(at(5, 12))  # Saturday
    assert schedule.hours_per_week() == pytest.approx(55.0)
    assert schedule.starts_per_week() == 5


def test_plan_flags_and_serve_text_give_the_same_schedule():
    assert Schedule.from_hours_days("9-18", "mon-fri").intervals == (
        Schedule.parse("mon-fri 09:00-18:00").intervals
    )


def test_comma_lists_and_several_windows():
    schedule = Schedule.parse("mon,wed 9-17; sat 10:30-14")
    assert schedule.is_active(at(0, 9)) and schedule.is_active(at(2, 16))
    assert not schedule.is_active(at(1, 12))
    assert schedule.is_active(at(5, 10, 30)) and not schedule.is_active(at(5, 10, 29))
    assert schedule.hours_per_week() == pytest.approx(8 + 8 + 3.5)


def test_window_past_midnight_and_wrapping_day_range():
    schedule = Schedule.parse("fri-mon 22:00-02:00")
    assert schedule.is_active(at(4, 23)) and schedule.is_active(at(5, 1))
    assert schedule.is_active(at(0, 1))  # Sunday 22:00 runs into Monday 01:00
    assert schedule.is_active(at(1, 1))  # Monday 22:00 runs into Tuesday 02:00
    assert not schedule.is_active(at(1, 3)) and not schedule.is_active(at(2, 1))
    assert schedule.hours_per_week() == pytest.approx(4 * 4)


def test_hours_per_month_scales_a_week_to_an_average_month():
    schedule = Schedule.parse("mon-fri 9-18")
    assert schedule.hours_per_month() == pytest.approx(45 * DAYS_PER_MONTH / 7)
    assert schedule.hours_per_month(28) == pytest.approx(180)
    assert Schedule.always().hours_per_month(30) == pytest.approx(720)
    assert Schedule.parse("00:00-24:00").is_always_on


def test_next_change_finds_the_next_flip_including_next_week():
    schedule = Schedule.parse("mon-fri 9-18")
    assert schedule.next_change(at(0, 7)) == at(0, 9)
    assert schedule.next_change(at(0, 9)) == at(0, 18)
    assert schedule.next_change(at(4, 18, 30)) == datetime(2026, 11, 30, 9)
    assert Schedule.always().next_change(at(0, 7)) is None


def test_next_change_across_the_sunday_monday_seam():
    schedule = Schedule.parse("sun-mon 0-24")
    assert schedule.starts_per_week() == 1
    assert schedule.is_active(at(6, 23)) and schedule.is_active(at(0, 1))
    assert schedule.next_change(at(6, 12)) == datetime(2026, 12, 1)  # the Tuesday after


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty schedule"),
        ("mon-fry 9-17", "unknown day 'fry'"),
        ("mon-fri 9", "invalid hours"),
        ("mon-fri 25-26", "hours must be 0-24"),
        ("mon-fri 9:75-10", "minutes must be 00-59"),
        ("mon-fri 9-9", "start equals end"),
        ("mon-fri 24:00-10", "24:00 can only end"),
        ("mon-fri 9-17;", "empty window"),
        ("mon fri 9-17", "invalid window"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        Schedule.parse(text)
