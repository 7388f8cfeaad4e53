"""Declared options: conversion of command-line strings, structured values, secrets."""

from __future__ import annotations

import pytest

from arena_adapters.errors import ConfigError
from arena_adapters.options import MASK, Option


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        (Option("image_size", tuple), "180,320", (180, 320)),
        (Option("image_size", tuple), "180x320", (180, 320)),
        (Option("image_size", tuple), " 180 x 320 ", (180, 320)),
        (Option("weights", list), "0.5, 1, two", [0.5, 1, "two"]),
        (Option("weights", list), "[1, 2.5]", [1, 2.5]),
        (Option("dims", dict), "joint=7,gripper=1", {"joint": 7, "gripper": 1}),
        (Option("dims", dict), '{"joint": 7}', {"joint": 7}),
        (Option("flag", bool), "off", False),
    ],
)
def test_structured_options_read_command_line_strings(option: Option, text: str, expected: object) -> None:
    assert option.convert(text) == expected


def test_a_parse_function_reads_a_custom_form() -> None:
    ratio = Option("ratio", tuple, parse=lambda text: tuple(int(v) for v in text.split(":")))
    assert ratio.convert("16:9") == (16, 9)
    with pytest.raises(ConfigError, match="option 'ratio'.*cannot read '16-9'"):
        ratio.convert("16-9")


@pytest.mark.parametrize(("option", "text"), [(Option("dims", dict), "joint"), (Option("dims", dict), "[1]"),
                                               (Option("size", tuple), "[1,")])
def test_unreadable_structured_values_name_the_option(option: Option, text: str) -> None:
    with pytest.raises(ConfigError, match=f"option {option.name!r}"):
        option.convert(text)


def test_secret_values_never_appear_in_errors_or_descriptions() -> None:
    token = Option("api_token", int, 5)
    with pytest.raises(ConfigError) as caught:
        token.convert("hunter2")
    assert "hunter2" not in str(caught.value)
    assert MASK in Option("password", str, "hunter2").describe()
