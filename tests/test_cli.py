"""The command line: help that explains every option, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from erpack.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_subcommand_and_option_has_help():
    for name, sub in _subcommands().items():
        assert sub.description, f"`erpack {name}` has no description"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"`erpack {name}` option {action.option_strings or action.dest} has no help"


def test_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "erpack", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout
    out = subprocess.run([sys.executable, "-m", "erpack", "demo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--layer" in out.stdout and "--documents" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["demo", "--dataset", "imdb", "--documents", "1"], "unknown built-in data set 'imdb'"),
    (["demo", "--model", "no-such-org/no-such-model", "--documents", "1"], "cannot load model 'no-such-org/no-such-model'"),
])
def test_user_error_is_a_message_and_exit_2(capsys, argv, message):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


@pytest.mark.real
def test_demo_end_to_end_json(capsys):
    rc = main(["demo", "--documents", "16", "--repeats", "1", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert rc == 0
    assert result["layer"] == 3 and result["num_layers"] == 6
    assert result["parity_max_abs_diff"] <= 1e-5
    assert result["documents"] == 16 and result["tokens"] > 16


def test_cli_reference_in_docs_is_current():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "tools" / "cli_docs.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
