"""Issue 11 item 5: commands without sideways imports, and an error handler that tells bad input from bugs.

The import rules are read from the source with `ast` (every import, also inside functions); the error
handling runs the real command line with a command's helper replaced by one that fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labelspace.commands.data as data_commands
from labelspace.commands.common import CommandError
from labelspace.data import save
from labelspace.data.builtin import demo

SOURCE = Path(__file__).resolve().parents[1] / "src" / "labelspace"
COMMANDS = sorted((SOURCE / "commands").glob("*.py"))
#: What a command module may import from `labelspace.commands`: the shared helpers, the output-path rule.
SHARED = {"labelspace.commands.common", "labelspace.commands.paths"}
#: The one command that runs another: quickstart trains with `labelspace.commands.train.run_training`.
RUNS_ANOTHER_COMMAND = {("quickstart", "labelspace.commands.train")}


def imports(path: Path) -> list[tuple[ast.stmt, str, list[str], bool]]:
    """(node, module, names, at module level) for every import in ``path``, also those inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node, alias.name, [], id(node) in top))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [alias.name for alias in node.names]
            found.append((node, node.module, names, id(node) in top))
            found.extend((node, f"{node.module}.{name}", [], id(node) in top) for name in names)
    return found


def test_the_command_modules_are_found():
    assert {path.stem for path in COMMANDS} >= {"common", "data", "evaluate", "mine", "quickstart", "train"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: path.name)
def test_no_command_module_imports_the_cli(path):
    found = [f"line {node.lineno}: {module}" for node, module, _, _ in imports(path) if module == "labelspace.cli"]
    assert not found, f"{path.name} imports labelspace.cli (sideways): {found}"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: path.name)
def test_commands_share_helpers_through_one_module(path):
    """A command module takes shared helpers from commands.common / commands.paths, at its top, never by name
    from a sibling command module; no labelspace module hands it a private (``_name``) helper."""
    problems = []
    for node, module, names, at_top in imports(path):
        if module.startswith("labelspace.commands.") and module.count(".") == 2:
            if not at_top:
                problems.append(f"line {node.lineno}: {module} imported inside a function")
            sibling = module not in SHARED and module != f"labelspace.commands.{path.stem}"
            if sibling and (path.stem, module) not in RUNS_ANOTHER_COMMAND:
                problems.append(f"line {node.lineno}: imports the command module {module}")
        if module.startswith("labelspace"):
            problems += [f"line {node.lineno}: {module} hands over the private {n}" for n in names if n[0] == "_"]
    assert not problems, f"{path.name}: {problems}"


def test_cli_imports_every_command_module_at_its_top_without_a_suppression():
    text = (SOURCE / "cli.py").read_text(encoding="utf-8")
    assert "E402" not in text and "noqa" not in text
    tree = ast.parse(text)
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    first_code = next(i for i, node in enumerate(body) if not isinstance(node, ast.Import | ast.ImportFrom))
    assert not any(isinstance(node, ast.Import | ast.ImportFrom) for node in body[first_code:]), "import after code"
    at_top = {module for _, module, _, top in imports(SOURCE / "cli.py") if top}
    expected = {f"labelspace.commands.{path.stem}" for path in COMMANDS if "def register(" in path.read_text()}
    assert expected <= at_top, sorted(expected - at_top)


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "d.jsonl"
    save(demo("dev").subset(range(4)), path)
    return path


def lookup_bug(*args, **kwargs):
    return {}["text_column"]  # a KeyError from a failed lookup: a bug, not a check


def runtime_bug(*args, **kwargs):
    raise RuntimeError("state went wrong")  # not one of labelspace's input checks


@pytest.mark.parametrize(("bug", "name"), [(lookup_bug, "KeyError"), (runtime_bug, "RuntimeError")])
def test_a_bug_in_a_command_shows_its_traceback_and_exit_1(run_cli, monkeypatch, data_file, bug, name):
    monkeypatch.setattr(data_commands, "load_data", bug)
    code, _, stderr = run_cli("data", "check", str(data_file))
    assert code == 1
    assert "Traceback (most recent call last)" in stderr and f"in {bug.__name__}" in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"labelspace: internal error ({name}): this is a bug in labelspace")
    assert last.endswith("please report it with the traceback above")


def test_a_labelspace_error_from_a_command_is_one_line_and_exit_2(run_cli, monkeypatch, data_file):
    def refuse(*args, **kwargs):
        raise CommandError("--text-column: no column 'body' in d.jsonl")

    monkeypatch.setattr(data_commands, "load_data", refuse)
    code, stdout, stderr = run_cli("data", "check", str(data_file))
    assert (code, stdout) == (2, "")
    assert stderr == "labelspace: error: --text-column: no column 'body' in d.jsonl\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "rows"], "kind must be one of auto, labeled, pairs, triplets; got 'rows'"),  # a ValueError check
        (["--labels-format", "bits"], "--labels-format: expected one of auto, names, ids, multi_hot; got 'bits'"),
    ],
)
def test_bad_input_caught_by_our_checks_is_one_line_and_exit_2(run_cli, data_file, args, message):
    code, stdout, stderr = run_cli("data", "check", str(data_file), *args)
    assert (code, stdout) == (2, "")
    assert stderr == f"labelspace: error: {message}\n"
