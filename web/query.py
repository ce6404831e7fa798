"""Reading a request's query string the same way in every route."""

from __future__ import annotations

from flask import request

TRUE = ("1", "true", "yes")


def flag(name: str) -> bool:
    """A boolean query parameter (`?raw=1`, `?follow=true`): on for 1, true or yes; off otherwise."""
    return request.args.get(name) in TRUE
