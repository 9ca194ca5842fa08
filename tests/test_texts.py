"""What the program says about itself: --help's defaults and texts, the progress bar's words."""
from __future__ import annotations

import dataclasses
import re

import pytest

from common.config import TrainConfig
from training import cli
from training.trainer import Progress, bar_postfix


@pytest.fixture
def help_text(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")  # one line per flag
    return cli.build_parser().format_help()


def flag_line(help_text: str, flag: str) -> str:
    """A flag's entry in --help: its line and the help text under it, up to the next flag."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(flag + " "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  -")
                or not lines[i].startswith(" ")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


def test_help_never_says_default_none(help_text):
    """A None default means "left out", which each text explains in words; argparse's
    "(default: None)" appended to "(default: runs/<timestamp>)" contradicted it."""
    assert "(default: None)" not in help_text
    for flag in ("--log-dir", "--seed", "--workers", "--storage", "--max-seconds", "--lr-solved"):
        assert "default" in flag_line(help_text, flag).lower() or "if omitted" in flag_line(help_text, flag)


def test_help_shows_widths_as_typed_and_plain_defaults(help_text):
    assert "(default: 48,48)" in flag_line(help_text, "--hidden")
    assert "(48, 48)" not in help_text
    assert "(default: 100)" in flag_line(help_text, "--episodes")
    assert "(default: 1000000)" in flag_line(help_text, "--max-env-steps")
    assert flag_line(help_text, "--log-dir").count("default") == 1


def test_help_texts_quote_no_measured_figures():
    """Measured figures belong in docs/performance.md, where their date and machine are; a help
    text says why a default is what it is."""
    measured = re.compile(r"\d+(\.\d+)?\s?(%|s\b|ms\b)|[Mm]easured")
    for f in dataclasses.fields(TrainConfig):
        assert not measured.search(f.metadata["help"]), (f.name, f.metadata["help"])


def test_bar_counts_the_streak_until_the_solve():
    prog = Progress(consecutive=2, eval_rows=[{"mean": 480.2}])
    assert bar_postfix(prog, 3, 0.05) == "eps 0.05 eval   480 rounds 2/3"


def test_bar_after_the_solve_says_solved_not_rounds_52_of_3():
    prog = Progress(consecutive=52, solved_at_round=10, post_solve_rounds=50,
                    post_solve_passed=49, eval_rows=[{"mean": 500.0}])
    text = bar_postfix(prog, 3, 0.01)
    assert "52/3" not in text and "solved" in text and "49/50" in text


def test_report_says_what_the_iqm_keeps():
    from experiments.seeds_report import iqm_meaning
    text = iqm_meaning(10)
    assert "middle 50%" not in text and "2 of 10 from each end" in text and "middle 6" in text
    assert "middle 10" in iqm_meaning(20)
