"""Reading a request's query string the same way in every route."""

from __future__ import annotations

from flask import request

TRUE = ("1", "true", "yes")


def flag(name: str) -> bool:
    """A boolean query parameter (`?raw=1`, `?follow=true`): on for 1, true or yes; off otherwise."""
    return request.args.get(name) in TRUE


EPOCH_MS_FROM = 1e11  # a larger epoch is milliseconds: 1e11 seconds is the year 5138


def epoch_seconds(name: str) -> float | None:
    """A time query parameter as epoch seconds; it may be given in seconds or milliseconds. None when
    absent; ValueError (the route's 400) when it is not a finite, non-negative number."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be epoch seconds or milliseconds, not {value[:40]!r}") from None
    if not 0 <= number < float("inf"):
        raise ValueError(f"{name} must be epoch seconds or milliseconds (a finite number >= 0)")
    return number / 1000 if number >= EPOCH_MS_FROM else number


def bounded_int(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; ValueError (the route's 400) otherwise."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer {low}..{high}") from None
    if not low <= number <= high:
        raise ValueError(f"{name} must be {low}..{high}")
    return number
