import pytest

from coderig.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("2m", 120.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("3", 3.0)],
)
def test_parse_duration_reads_go_style_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "s", "5s3", "-"])
def test_parse_duration_rejects_garbage_with_a_clear_message(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_uses_vegeta_like_units():
    assert format_duration(0.0123) == "12.300ms"
    assert format_duration(1.5) == "1.500s"
    assert format_duration(0.00085) == "850.000µs"


def test_parse_size_reads_binary_and_decimal_units():
    assert parse_size("1MiB") == 1024 * 1024
    assert parse_size("512kb") == 512_000
    with pytest.raises(ValueError):
        parse_size("lots")
