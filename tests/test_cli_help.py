"""`--help` of every verb: every argument explained, every verb listed."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from runner.cli import envs, main, pack, rerun, runs, ui
from support.cli import cli


def _parsers() -> dict[str, argparse.ArgumentParser]:
    return {
        "run-project": main._run_parser(),
        "runs": runs._runs_parser(),
        "envs": envs._envs_parser(),
        "rerun": rerun._rerun_parser(),
        "pack": pack._pack_parser(),
        "ui": ui._ui_parser(),
    }


def _undocumented(name: str, parser: argparse.ArgumentParser) -> Iterator[str]:
    """`name ARG` for each argument, subcommand included, that `--help` would not explain."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            explained = {choice.dest for choice in action._choices_actions if choice.help}
            for verb, sub in action.choices.items():
                if verb not in explained:
                    yield f"{name} {verb} (the subcommand)"
                yield from _undocumented(f"{name} {verb}", sub)
        elif not action.help and action.help is not argparse.SUPPRESS:
            yield f"{name} {'/'.join(action.option_strings) or action.dest}"


def test_every_argument_of_every_verb_has_help_text() -> None:
    missing = [m for name, parser in _parsers().items() for m in _undocumented(name, parser)]
    assert missing == [], "arguments without help: " + ", ".join(missing)


def test_the_main_help_lists_every_verb() -> None:
    shown = cli("--help").out
    assert " ".join(shown.split()).count("run-project envs list|gc") == 1, shown
    for verb in main.VERBS:
        assert f"run-project {verb}" in shown, (verb, shown)
