"""`labelspace.evaluation.report`: one self-contained HTML file, escaped text, atomic write, a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from labelspace.evaluation import classification_report
from labelspace.evaluation import report as report_module
from labelspace.evaluation.report import SECTION_TITLES, decision_report, write_report

NASTY = '<b>&"x"'


def _data(n: int = 120, labels: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n, labels)) < 0.3).astype(int)
    y_true[:, -1] = 0  # a label without positives: curves must cope
    scores = np.clip(0.45 * y_true + 0.6 * rng.random((n, labels)), 0, 1).astype(np.float32)
    embeddings = rng.normal(size=(n, 16)).astype(np.float32)
    return y_true, scores, embeddings


def _names(count: int) -> list[str]:
    return [NASTY, *(f"label {i}" for i in range(1, count))]


def _headings(text: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", text)


def test_single_file_with_inline_images_and_every_section(tmp_path):
    y_true, scores, embeddings = _data()
    path = write_report(
        tmp_path / "out" / "report.html",
        label_names=_names(5),
        y_true=y_true,
        probabilities=scores,
        thresholds=np.linspace(0.3, 0.7, 5),
        embeddings=embeddings,
        comparisons={"frozen encoder, global 0.5": {"macro_f1": 0.25, "micro_f1": 0.3}, NASTY: {"macro_f1": 0.5}},
        title=f"report {NASTY}",
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert _headings(text) == list(SECTION_TITLES)
    images = re.findall(r"<img [^>]*>", text)
    assert len(images) == 5
    assert all('src="data:image/png;base64,' in image for image in images)
    # Self-contained: no script, no stylesheet link, no remote or file reference.
    assert "<script" not in text and "<link" not in text
    assert not re.search(r"(src|href)=\"(?!data:)", text)
    # Every piece of text is escaped: the raw name never appears, its escaped form does.
    assert NASTY not in text
    assert "&lt;b&gt;&amp;&quot;x&quot;" in text
    assert "frozen encoder, global 0.5" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html"]


def test_without_embeddings_the_projection_is_a_note(tmp_path):
    y_true, scores, _ = _data(labels=3)
    path = write_report(
        tmp_path / "r.html", label_names=["a", "b", "c"], y_true=y_true, probabilities=scores, thresholds=0.5
    )
    text = path.read_text(encoding="utf-8")
    assert len(re.findall(r"<img ", text)) == 4
    assert "Comparisons" not in _headings(text)
    assert "projection skipped" in text


def _half_write_bytes(self: Path, data: bytes) -> int:
    """Path.write_bytes that stores half the data, then fails like a full disk."""
    with open(self, "wb") as file:
        file.write(data[: len(data) // 2])
    raise OSError("disk full")


def test_atomic_write_keeps_the_old_report_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    y_true, scores, embeddings = _data(labels=3)
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")
    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_bytes", _half_write_bytes)
        with pytest.raises(OSError, match="disk full"):
            write_report(target, label_names=["a", "b", "c"], y_true=y_true, probabilities=scores, thresholds=0.5)
    assert target.read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_module, "_projection", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(
            target,
            label_names=["a", "b", "c"],
            y_true=y_true,
            probabilities=scores,
            thresholds=0.5,
            embeddings=embeddings,
        )
    assert target.read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_decision_report_mixes_decisions_and_ranking():
    y_true, scores, _ = _data(labels=4)
    thresholds = np.array([0.4, 0.5, 0.6, 0.5])
    assert decision_report(y_true, scores, thresholds=thresholds) == classification_report(
        y_true, scores, thresholds=thresholds
    )
    predictions = np.zeros_like(y_true)
    predictions[:, 0] = 1
    mixed = decision_report(y_true, scores, thresholds=thresholds, predictions=predictions)
    decided = classification_report(y_true, predictions)
    ranked = classification_report(y_true, scores, thresholds=thresholds)
    assert mixed["macro_f1"] == decided["macro_f1"] and mixed["hamming_loss"] == decided["hamming_loss"]
    assert mixed["macro_roc_auc"] == ranked["macro_roc_auc"]
    assert mixed["per_label"]["0"]["f1"] == decided["per_label"]["0"]["f1"]
    assert mixed["per_label"]["0"]["threshold"] == 0.4
    assert mixed["per_label"]["0"]["average_precision"] == ranked["per_label"]["0"]["average_precision"]


def test_bad_input_is_a_value_error(tmp_path):
    y_true, scores, embeddings = _data(labels=3)
    with pytest.raises(ValueError, match="label_names"):
        write_report(tmp_path / "r.html", label_names=["a"], y_true=y_true, probabilities=scores, thresholds=0.5)
    with pytest.raises(ValueError, match="embeddings"):
        write_report(
            tmp_path / "r.html",
            label_names=["a", "b", "c"],
            y_true=y_true,
            probabilities=scores,
            thresholds=0.5,
            embeddings=embeddings[:-1],
        )
    assert not list(tmp_path.iterdir())


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_renders_in_a_headless_browser(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("Chromium not installed: apt-get install chromium chromium-driver")
    y_true, scores, embeddings = _data(labels=6)
    path = write_report(
        tmp_path / "report.html",
        label_names=_names(6),
        y_true=y_true,
        probabilities=scores,
        thresholds=0.5,
        embeddings=embeddings,
        comparisons={"a": {"macro_f1": 0.1}},
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path}/ud"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", path.resolve().as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    for title in SECTION_TITLES:
        assert f"<h2>{title}</h2>" in dom, title
    assert len(re.findall(r"<img ", dom)) == 5
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, "--window-size=1200,2400", f"--screenshot={shot}", path.resolve().as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 50, "the screenshot is (almost) a single colour"
    # The plots rendered: the lower part of the page (images) is not blank either.
    lower = pixels[pixels.shape[0] // 2 :]
    assert lower.std() > 0.05


def test_candidates_training_compared_are_shown_with_the_one_that_shipped(tmp_path):
    """Issue 14: the report shows the frozen baseline beside the fine-tuned model, which shipped and why."""
    y_true, scores, _ = _data(labels=3)
    selection = {
        "metric": "macro_f1",
        "greater_is_better": True,
        "candidates": {"fine_tuned": {"macro_f1": 0.66}, "frozen_baseline": {"macro_f1": 0.75}},
        "shipped": "frozen_baseline",
        "reason": f"frozen_baseline has the best dev macro_f1 {NASTY}",
    }
    path = write_report(
        tmp_path / "r.html",
        label_names=["a", "b", "c"],
        y_true=y_true,
        probabilities=scores,
        thresholds=0.5,
        selection=selection,
    )
    text = path.read_text(encoding="utf-8")
    assert "Candidates compared on dev" in _headings(text)
    section = text[text.index("Candidates compared on dev") :]
    rows = re.findall(r"<tr>(.*?)</tr>", section[: section.index("</table>")], flags=re.S)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in rows]
    assert cells[0] == ["candidate", "dev macro_f1", "shipped"]
    assert [row[0] for row in cells[1:]] == ["fine_tuned", "frozen_baseline"]
    assert [row[2] for row in cells[1:]] == ["", "yes"]
    assert "0.66" in cells[1][1] and "0.75" in cells[2][1]
    assert NASTY not in text  # the reason is escaped
    plain = write_report(
        tmp_path / "plain.html", label_names=["a", "b", "c"], y_true=y_true, probabilities=scores, thresholds=0.5
    )
    assert "Candidates compared on dev" not in plain.read_text(encoding="utf-8")
