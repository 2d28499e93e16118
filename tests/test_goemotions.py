"""GoEmotions loader: local folder, environment variable, and download into the cache."""

from __future__ import annotations

import functools
import http.server
import threading
from collections import Counter
from pathlib import Path

import pytest

from labelspace.data.builtin import GOEMOTIONS_LABELS, goemotions
from labelspace.data.builtin.goemotions import goemotions_dir


def _independent_counts(path: Path) -> tuple[int, Counter]:
    counts: Counter = Counter()
    rows = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line:
            continue
        rows += 1
        _, ids, _ = line.split("\t")
        counts.update(int(i) for i in ids.split(","))
    return rows, counts


def test_reads_local_folder_and_matches_independent_count(goemotions_dir):
    data = goemotions("dev", data_dir=goemotions_dir)
    rows, counts = _independent_counts(goemotions_dir / "dev.tsv")
    assert len(data) == rows == 5426
    assert data.label_set == GOEMOTIONS_LABELS
    assert data.labels.label_counts().tolist() == [counts[i] for i in range(28)]


def test_environment_variable(goemotions_dir, monkeypatch):
    monkeypatch.setenv("LABELSPACE_GOEMOTIONS_DIR", str(goemotions_dir))
    assert len(goemotions("test")) == 5427


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected train.tsv and labels.txt"):
        goemotions("train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        goemotions("validation", data_dir=tmp_path)  # type: ignore[arg-type]


@pytest.fixture
def release_server(tmp_path):
    """A loopback HTTP server holding a miniature GoEmotions release (emotions.txt + splits)."""
    root = tmp_path / "release"
    root.mkdir()
    (root / "emotions.txt").write_text("\n".join(GOEMOTIONS_LABELS.names) + "\n", encoding="utf-8")
    (root / "train.tsv").write_text("so happy today\t17\tid1\nugh, again?\t3,9\tid2\n", encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_downloads_into_cache_when_absent(release_server, tmp_path, monkeypatch):
    monkeypatch.delenv("LABELSPACE_GOEMOTIONS_DIR", raising=False)
    monkeypatch.setenv("LABELSPACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABELSPACE_GOEMOTIONS_URL", release_server)
    data = goemotions("train")
    assert data.texts == ["so happy today", "ugh, again?"]
    assert data[1][1] == ["annoyance", "disappointment"]
    folder = tmp_path / "cache" / "goemotions"
    assert sorted(p.name for p in folder.iterdir()) == ["labels.txt", "train.tsv"]  # no partial files left


def test_no_download_when_forbidden(tmp_path, monkeypatch):
    monkeypatch.delenv("LABELSPACE_GOEMOTIONS_DIR", raising=False)
    monkeypatch.setenv("LABELSPACE_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="allow download"):
        goemotions_dir("train", download=False)


def test_failed_download_names_the_url_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("LABELSPACE_GOEMOTIONS_DIR", raising=False)
    monkeypatch.setenv("LABELSPACE_CACHE", str(tmp_path))
    with pytest.raises(OSError, match="could not download GoEmotions train.tsv from http://127.0.0.1:9/"):
        goemotions_dir("train", base_url="http://127.0.0.1:9", timeout=5)
    assert list((tmp_path / "goemotions").iterdir()) == []
