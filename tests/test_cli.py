"""The `labelspace` command: help, version, data check, convert, split, quickstart, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from labelspace import __version__
from labelspace.data import load

COMMANDS = [
    ["--help"],
    ["data", "check", "--help"],
    ["convert", "triplets-to-pairs", "--help"],
    ["split", "--help"],
    ["quickstart", "--help"],
    ["train", "--help"],
]


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"labelspace {__version__}"


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_every_command_has_help_with_an_example(run_cli, args):
    code, out, _ = run_cli(*args)
    assert code == 0
    if args != ["--help"]:
        assert "Example: labelspace" in out


def test_usage_errors_are_one_line(run_cli):
    code, out, err = run_cli("data", "check", "--no-such-option")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("labelspace: error: No such option: --no-such-option")


def test_data_check_json_counts(run_cli, tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("text,labels\nrefund please,billing|refund\napp slow,performance\nrefund please,refund\n")
    code, out, err = run_cli("data", "check", str(path), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["rows"] == 3
    assert {row["label"]: row["count"] for row in report["label_frequencies"]} == {
        "billing": 1,
        "performance": 1,
        "refund": 2,
    }
    assert report["duplicated_texts"] == 2


def test_data_check_goemotions_table(run_cli, goemotions_dir):
    code, out, err = run_cli("data", "check", str(goemotions_dir / "train.tsv"))
    assert code == 0, err
    counts: Counter = Counter()
    names = (goemotions_dir / "labels.txt").read_text().split()
    for line in (goemotions_dir / "train.tsv").read_text(encoding="utf-8").splitlines():
        counts.update(names[int(i)] for i in line.split("\t")[1].split(","))
    table_rows = [line for line in out.splitlines() if line.startswith("│")]
    for name, count in counts.items():
        assert any(f"│ {name} " in row and f" {count} " in row for row in table_rows), name
    positions = {name: next(i for i, row in enumerate(table_rows) if f"│ {name} " in row) for name in counts}
    assert max(positions, key=positions.get) == "neutral"  # rarest first: neutral, the most frequent, last


def test_convert_triplets_to_pairs(run_cli, tmp_path):
    source = tmp_path / "triplets.csv"
    source.write_text("anchor,positive,negative,negative_2\nq1,p1,n1,n2\nq2,p2,n3,\n")
    target = tmp_path / "pairs.jsonl"
    code, out, err = run_cli("convert", "triplets-to-pairs", str(source), str(target))
    assert code == 0, err
    assert "wrote 5 pairs from 2 triplets" in out
    pairs = load(target)
    assert list(zip(pairs.text1, pairs.text2, pairs.scores.tolist(), strict=True)) == [
        ("q1", "p1", 1.0),
        ("q1", "n1", 0.0),
        ("q1", "n2", 0.0),
        ("q2", "p2", 1.0),
        ("q2", "n3", 0.0),
    ]


def test_split_writes_three_files_that_partition_the_input(run_cli, tmp_path):
    from labelspace.data.builtin import demo
    from labelspace.data.writers import save

    source = tmp_path / "all.jsonl"
    everything = demo("all")
    save(everything, source)
    code, out, err = run_cli("split", str(source), "--out", str(tmp_path / "out"), "--seed", "3")
    assert code == 0, err
    parts = [load(tmp_path / "out" / f"{name}.jsonl") for name in ("train", "dev", "test")]
    assert sorted(t for part in parts for t in part.texts) == sorted(everything.texts)
    assert abs(len(parts[0]) - 0.8 * len(everything)) <= 2
    assert "billing" in out and "train (" in out


def test_split_bad_fractions(run_cli, tmp_path):
    source = tmp_path / "a.csv"
    source.write_text("text,labels\na,x\nb,y\n")
    code, _, err = run_cli("split", str(source), "--out", str(tmp_path), "--fractions", "0.8,zero")
    assert code == 2 and err.startswith("labelspace: error: --fractions: expected numbers")


def test_installed_console_script_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,labels\nhello,\n,refund\n")
    result = subprocess.run(
        [sys.executable, "-m", "labelspace.cli", "data", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == f"labelspace: error: {bad}:3: column 'text': text is empty (expected a non-empty text)\n"
