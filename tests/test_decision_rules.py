"""Decision rules live in one module (labelspace.evaluation.thresholds); the model and evaluation share them."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import labelspace.evaluation as evaluation
import labelspace.evaluation.thresholds as thresholds
import labelspace.models as models
import labelspace.models.model as model_module
from labelspace.models import ClassificationHead, LabelspaceModel
from labelspace.models.testing import tiny_model_folder

SRC = Path(__file__).resolve().parents[1] / "src" / "labelspace"
RULE_NAMES = ("DECISION_RULES", "default_decision_rule", "apply_decision_rule", "check_decision_rule")

# Hand-built scores: row 0 ties labels 1 and 2 at 0.6; row 1 has nothing >= its threshold; row 2 ties
# every label. Thresholds are per label.
SCORES = np.array([[0.1, 0.6, 0.6], [0.2, 0.3, 0.25], [0.5, 0.5, 0.5]], dtype=np.float32)
THRESHOLDS = np.array([0.5, 0.6, 0.7])
EXPECTED = {
    # score >= own threshold: 0.6 >= 0.6 yes, 0.6 >= 0.7 no; row 2: only 0.5 >= 0.5
    ("threshold", 1): [[False, True, False], [False, False, False], [True, False, False]],
    # the same, and row 1 (nothing chosen) gets its top label (0.3, label 1)
    ("at_least_one", 1): [[False, True, False], [False, True, False], [True, False, False]],
    # the two best per row, thresholds ignored
    ("top_k", 2): [[False, True, True], [False, True, True], None],  # row 2: any two of three tied labels
}


def test_one_module_defines_the_decision_rules():
    """No module under src/ but evaluation/thresholds.py assigns or defines a decision-rule name."""
    defined: dict[str, list[str]] = {name: [] for name in RULE_NAMES}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [target.id for target in node.targets if isinstance(target, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            for name in names:
                if name in defined:
                    defined[name].append(str(path.relative_to(SRC)))
    assert defined == {name: ["evaluation/thresholds.py"] for name in RULE_NAMES}


def test_the_model_and_evaluation_use_the_same_objects():
    for name in RULE_NAMES:
        assert getattr(model_module, name) is getattr(thresholds, name), name
        assert getattr(evaluation, name) is getattr(thresholds, name), name
    assert models.DECISION_RULES is thresholds.DECISION_RULES == ("threshold", "at_least_one", "top_k")
    assert evaluation.OBJECTIVES is thresholds.OBJECTIVES
    assert evaluation.label_positions is thresholds.label_positions


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> LabelspaceModel:
    folder = tiny_model_folder(tmp_path_factory.mktemp("tiny"))
    return LabelspaceModel.from_pretrained(folder, labels=["billing", "bug", "refund"], seed=0)


@pytest.mark.parametrize(("rule", "k"), list(EXPECTED))
def test_model_decisions_are_the_evaluation_rule(model, rule, k):
    model.set_thresholds(THRESHOLDS)
    model.set_decision_rule(rule, k)
    decided = model.decide(SCORES)
    applied = evaluation.apply_decision_rule(SCORES, THRESHOLDS, rule=rule, k=k)
    np.testing.assert_array_equal(decided, applied)
    for row, expected in enumerate(EXPECTED[(rule, k)]):
        if expected is None:  # a full tie: any k labels, but exactly k
            assert decided[row].sum() == k
        else:
            assert decided[row].tolist() == expected


def test_model_top_k_above_the_label_count_takes_every_label(model):
    model.set_decision_rule("top_k", 5)
    assert model.decide(SCORES).all()


def test_the_model_and_the_function_refuse_a_rule_with_one_message(model):
    with pytest.raises(ValueError) as from_model:
        model.set_decision_rule("argmax")
    with pytest.raises(ValueError) as from_function:
        evaluation.apply_decision_rule(SCORES, rule="argmax")
    expected = "must be one of threshold, at_least_one, top_k, got 'argmax'"
    assert str(from_model.value) == "decision_rule " + expected
    assert str(from_function.value) == "rule " + expected
    with pytest.raises(ValueError, match="^top_k must be a positive integer, got 0$"):
        model.set_decision_rule("top_k", 0)


@pytest.mark.parametrize(
    ("head", "rule"),
    [
        (ClassificationHead(4, 3, kind="single_label"), "top_k"),
        (ClassificationHead(4, 3, kind="multi_label"), "threshold"),
        ("single_label", "top_k"),
        ("multi_label", "threshold"),
        (None, "threshold"),
    ],
)
def test_default_decision_rule(head, rule):
    assert evaluation.default_decision_rule(head) == rule


def test_a_single_label_model_starts_with_the_argmax(tmp_path):
    model = LabelspaceModel.from_pretrained(tiny_model_folder(tmp_path), labels=["a", "b"], head_kind="single_label")
    assert (model.decision_rule, model.top_k) == ("top_k", 1)
    assert model.decide([[0.4, 0.6], [0.7, 0.3]]).tolist() == [[False, True], [True, False]]
