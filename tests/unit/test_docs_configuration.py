"""docs/configuration.md is the one reference table of `akua-operator run` and `akua-sim`: every
flag and environment variable the commands accept is in it with its real default, and it lists
nothing they do not accept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from akua_operator import settings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
BIN = Path(sys.executable).parent
FLAG = re.compile(r"--[a-z][a-z-]+")
ENV = re.compile(r"\bAKUA_[A-Z_]+\b")


def _rows(command: str) -> list[list[str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if line.startswith("|") and cells[0] == command:
            rows.append(cells)
    assert rows, f"no '{command}' rows in {DOC}"
    return rows


def _output(*argv: str) -> str:
    binary = BIN / argv[0]
    assert binary.exists(), f"{binary} is missing: run `make venv`"
    return subprocess.run(
        [str(binary), *argv[1:]], capture_output=True, text=True, check=True
    ).stdout


def _flags_in(text: str) -> set[str]:
    return set(FLAG.findall(text)) - {"--help"}


def test_every_operator_flag_and_variable_is_documented_and_nothing_else() -> None:
    rows = _rows("operator")
    documented_flags = {f for row in rows for f in FLAG.findall(row[1])}
    documented_env = {e for row in rows for e in ENV.findall(row[2])}

    help_text = _output("akua-operator", "run", "--help")
    assert documented_flags == _flags_in(help_text)
    accepted_env = set(ENV.findall(help_text)) | set(
        ENV.findall(_output("akua-operator", "settings"))
    )
    assert {"AKUA_TOKEN", "AKUA_TOKEN_FILE", "AKUA_API_URL"} <= accepted_env
    assert documented_env == accepted_env


def _same_default(cell: str, default: object) -> bool:
    cell = cell.strip("`")
    if default is None:
        return cell == "-"
    if isinstance(default, bool):
        return cell.lower() == str(default).lower()
    if isinstance(default, int | float):
        return float(cell) == float(default)
    return cell == str(default)


def test_documented_defaults_are_the_real_ones() -> None:
    by_flag = {FLAG.findall(row[1])[0]: row for row in _rows("operator") if FLAG.search(row[1])}
    for opt in settings.OPTIONS:
        row = by_flag[opt.flag]
        assert f"`{opt.env}`" in row[2], row
        assert _same_default(row[3], opt.default), (opt.flag, row[3], opt.default)


def test_defaults_named_in_the_help_are_the_documented_ones() -> None:
    """Options outside settings.OPTIONS (telemetry) state their default in --help."""
    help_text = _output("akua-operator", "run", "--help")
    entries = re.findall(r"^  (--[a-z-]+)[^\n]*\n?(.*?)(?=^  -|^\S|\Z)", help_text, re.M | re.S)
    by_flag = {FLAG.findall(row[1])[0]: row for row in _rows("operator") if FLAG.search(row[1])}
    checked = 0
    for flag, text in entries:
        said = re.search(r"default ([^\s,)]+)", " ".join(text.split()))
        if said:
            checked += 1
            assert by_flag[flag][3].strip("`").lower() == said.group(1).lower(), (flag, said[0])
    assert checked >= 5, help_text


def test_every_simulator_flag_is_documented_and_nothing_else() -> None:
    documented = {f for row in _rows("akua-sim") for f in FLAG.findall(row[1])}
    assert documented == _flags_in(_output("akua-sim", "--help"))
