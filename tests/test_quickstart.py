"""`labelspace quickstart` end to end on the demo set (with the tiny model, to keep it fast)."""

from __future__ import annotations

import json

from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder


def test_quickstart_trains_tunes_evaluates_and_reports(run_cli, tmp_path):
    tiny = tiny_model_folder(tmp_path / "tiny")
    out = tmp_path / "runs" / "quickstart"
    code, stdout, stderr = run_cli("quickstart", "--model", str(tiny), "--epochs", "1", "--out", str(out))
    assert code == 0, stderr
    for row in ("frozen, 0.5", "frozen, tuned", "fine-tuned, 0.5", "fine-tuned, tuned"):
        assert row.split(",")[0] in stdout
    assert f"labelspace predict {out}" in stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("<img") >= 5 and "fine-tuned, tuned" in html
    model = LabelspaceModel.from_pretrained(out / "model")
    assert model.decision_rule == "at_least_one" and len(model.label_set) == 12
    dev = json.loads((out / "metrics.json").read_text())["dev"]
    assert dev["tuned"]["macro_f1"] >= dev["global 0.5"]["macro_f1"]
