"""`--help` tells the default of every option that has one: an installer reading it on a door
should not have to open the README to learn what happens when an option is left out."""

from __future__ import annotations

import argparse

from edgeface.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser, path: str = "edgeface"):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _subparsers(child, f"{path} {name}")


def test_every_option_with_a_default_names_it_in_its_help() -> None:
    silent = []
    for path, parser in _subparsers(build_parser()):
        for action in parser._actions:
            no_default = action.default is None or action.default is False  # (0 == False)
            if not action.option_strings or no_default or action.default == argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            text = action.help or ""
            if "default" not in text.lower():
                silent.append(f"{path} {action.option_strings[-1]}")
    assert silent == []
