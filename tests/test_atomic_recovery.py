"""Interrupted model-folder writes heal on the next command, symlinks survive, files get the umask's modes.

Issue 10, items 8 and 9. A model folder is replaced by two renames; a process killed between them
left no ``model/`` (only hidden copies), and killed writes left hidden ``.model.tmp-*`` copies that
nothing removed. `recover_folder` finishes or rolls back such a replace and removes what dead writers
left; the commands that open a run call it. safetensors wrote weights 0600 beside 0644 JSON files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.models import LabelspaceModel
from labelspace.models.encoder import hidden_copy_prefix, recover_folder
from labelspace.models.testing import tiny_model_folder

LABELS = demo("dev").label_set.names
#: Thresholds the writers in these tests save (all labels get the same one): any other value is damage.
THRESHOLDS = [round(0.1 * step, 1) for step in range(1, 10)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> LabelspaceModel:
    folder = tmp_path_factory.mktemp("tiny")
    return LabelspaceModel.from_pretrained(tiny_model_folder(folder / "encoder"), labels=LABELS, seed=0)


def new_run(model: LabelspaceModel, run: Path, threshold: float = 0.5) -> Path:
    model.set_thresholds(threshold)
    model.save(run / "model")
    return run


def dead_pid() -> int:
    """The id of a process that has exited (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def hidden_name(target: Path, kind: str, pid: int | None = None) -> str:
    """The name a writer (this process, or process ``pid``) gives its hidden ``kind`` copy of ``target``."""
    prefix = hidden_copy_prefix(target, kind)
    if pid is not None:
        prefix = prefix.replace(f"-{os.getpid()}-", f"-{pid}-")
    return prefix + "abc123"


def hidden_entries(*folders: Path) -> list[str]:
    return sorted(
        f"{folder.name}/{entry.name}"
        for folder in folders
        if folder.is_dir()
        for entry in folder.iterdir()
        if entry.name.startswith(".")
    )


def make_folder(path: Path, marker: str) -> Path:
    path.mkdir()
    (path / "labelspace.json").write_text(json.dumps({"marker": marker}))
    (path / "weights.bin").write_bytes(marker.encode())
    return path


def marker_of(path: Path) -> str:
    return json.loads((path / "labelspace.json").read_text())["marker"]


# ----------------------------------------------------------------------------- staged states


def test_a_missing_folder_with_a_complete_new_copy_is_finished(tmp_path):
    target = tmp_path / "model"
    writer = dead_pid()
    make_folder(tmp_path / hidden_name(target, "new", writer), "new")
    make_folder(tmp_path / hidden_name(target, "old", writer), "old")
    assert recover_folder(target) == "finished"
    assert marker_of(target) == "new"
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert recover_folder(target) is None and sorted(os.listdir(tmp_path)) == ["model"]  # idempotent


def test_a_missing_folder_with_only_an_old_copy_is_rolled_back(tmp_path):
    target = tmp_path / "model"
    writer = dead_pid()
    make_folder(tmp_path / hidden_name(target, "old", writer), "old")
    (tmp_path / hidden_name(target, "tmp", writer)).mkdir()  # a new copy still being written: incomplete
    assert recover_folder(target) == "rolled back"
    assert marker_of(target) == "old"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_copies_left_by_older_labelspace_versions_are_healed_too(tmp_path):
    target = tmp_path / "model"
    make_folder(tmp_path / ".model.old-1a2b3c4d", "old")  # the old writer's names: no writer recorded
    (tmp_path / ".model.tmp-x7_k2m9q").mkdir()
    assert recover_folder(target) == "rolled back"
    assert marker_of(target) == "old" and sorted(os.listdir(tmp_path)) == ["model"]


def test_leftovers_next_to_and_inside_a_good_folder_are_removed(tmp_path):
    target = make_folder(tmp_path / "run", "good")
    writer = dead_pid()
    for kind in ("tmp", "new", "old"):
        make_folder(tmp_path / hidden_name(target, kind, writer), kind)
    (target / hidden_name(target / "labelspace.json", "tmp", writer)).write_text("{")  # killed tune-thresholds
    (target / ".labelspace.json.k3j_9zq1.tmp").write_text("{")  # the same, by labelspace before this fix
    make_folder(target / hidden_name(target / "model", "new", writer), "inner")  # a sub-folder's replace
    (target / "notes.txt").write_text("kept")
    (target / ".gitignore").write_text("kept")
    assert recover_folder(target) is None
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert marker_of(target) == "good"
    assert sorted(os.listdir(target)) == [".gitignore", "labelspace.json", "model", "notes.txt", "weights.bin"]
    assert marker_of(target / "model") == "inner"  # run/model was missing: its complete new copy was put in place


def test_hidden_files_that_only_look_like_copies_are_kept(tmp_path):
    target = make_folder(tmp_path / "model", "good")
    (tmp_path / ".notes.old-2020").mkdir()  # a user's hidden folders and files
    (tmp_path / ".draft.tmp-v2").write_text("mine")
    (tmp_path / ".bashrc.old-backup1").write_text("mine")  # 8 characters, but a file: our copies are folders
    (target / ".cache.new-x.y").write_text("mine")
    (target / ".README.md.tmp").write_text("mine")
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(target))
    assert recover_folder(target) is None
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(target))) == before


def test_a_live_writer_keeps_its_copies(tmp_path):
    target = make_folder(tmp_path / "model", "good")
    in_progress = tmp_path / hidden_name(target, "tmp")  # this process is alive: it may still be writing
    in_progress.mkdir()
    assert recover_folder(target) is None
    assert in_progress.is_dir()


def test_a_live_writer_between_its_renames_is_let_finish(tmp_path):
    import threading

    target = tmp_path / "model"
    new = make_folder(tmp_path / hidden_name(target, "new"), "new")  # this (live) process is the writer
    old = make_folder(tmp_path / hidden_name(target, "old"), "old")
    writer = threading.Timer(0.2, os.rename, (new, target))
    writer.start()
    try:
        assert recover_folder(target) is None  # it waited: the writer put the new copy in place itself
    finally:
        writer.join()
    assert marker_of(target) == "new" and old.is_dir()  # the writer deletes its old copy itself


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_reader_without_write_access_is_not_stopped_by_leftovers(tmp_path):
    target = make_folder(tmp_path / "model", "good")
    (target / hidden_name(target / "labelspace.json", "tmp", dead_pid())).write_text("{")
    os.chmod(target, 0o555)
    try:
        assert recover_folder(target) is None
    finally:
        os.chmod(target, 0o755)
    assert marker_of(target) == "good"


def test_a_writer_on_another_machine_is_trusted_for_an_hour(tmp_path):
    target = make_folder(tmp_path / "model", "good")
    young = tmp_path / ".model.tmp-ffffff-123-young"
    old = tmp_path / ".model.tmp-ffffff-123-stale"
    if hidden_copy_prefix(target).startswith(".model.tmp-ffffff-"):
        pytest.skip("this machine's own tag is ffffff")
    young.mkdir()
    old.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    recover_folder(target)
    assert young.is_dir() and not old.exists()


def test_nothing_to_do_changes_nothing(tmp_path):
    target = make_folder(tmp_path / "model", "good")
    assert recover_folder(target) is None
    assert recover_folder(tmp_path / "missing" / "model") is None  # a parent that does not exist
    assert recover_folder("sentence-transformers/all-MiniLM-L6-v2") is None  # a hub id
    assert sorted(os.listdir(tmp_path)) == ["model"] and marker_of(target) == "good"


# ----------------------------------------------------------------------------- symlinks


def test_a_symlinked_model_folder_stays_a_symlink(tiny_model, tmp_path, run_cli):
    versions = tmp_path / "models"
    new_run(tiny_model, versions, 0.5)
    os.rename(versions / "model", versions / "v3")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(Path("..") / "models" / "v3")

    tiny_model.set_thresholds(0.7)
    assert tiny_model.save(run / "model", overwrite=True) == run / "model"
    assert (run / "model").is_symlink() and os.readlink(run / "model") == os.path.join("..", "models", "v3")
    assert json.loads((versions / "v3" / "labelspace.json").read_text())["thresholds"] == [0.7] * len(LABELS)

    code, _, err = run_cli("set-thresholds", str(run), "billing=0.2")
    assert code == 0, err
    assert (run / "model").is_symlink()
    assert json.loads((versions / "v3" / "labelspace.json").read_text())["thresholds"][0] == 0.2
    assert hidden_entries(run, versions, versions / "v3") == []
    assert sorted(os.listdir(run)) == ["model"] and sorted(os.listdir(versions)) == ["v3"]


def test_an_interrupted_replace_behind_a_symlink_heals_where_it_points(tmp_path):
    versions = tmp_path / "models"
    versions.mkdir()
    link = tmp_path / "model"
    link.symlink_to(versions / "v3")  # dangling: killed between the two renames in models/
    make_folder(versions / hidden_name(versions / "v3", "old", dead_pid()), "old")
    assert recover_folder(link) == "rolled back"
    assert link.is_symlink() and marker_of(link) == "old" and sorted(os.listdir(versions)) == ["v3"]


# ----------------------------------------------------------------------------- file modes


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_get_the_umask_modes(tiny_model, tmp_path, run_cli, umask, file_mode, folder_mode):
    import torch

    from labelspace.training.checkpoint import write_checkpoint

    previous = os.umask(umask)
    try:
        run = new_run(tiny_model, tmp_path / "run")
        assert run_cli("set-thresholds", str(run), "billing=0.3")[0] == 0  # rewrites labelspace.json alone
        weights = torch.nn.Parameter(torch.zeros(3))
        optimizer = torch.optim.Adam([weights])
        weights.sum().backward()
        optimizer.step()
        write_checkpoint(run / "checkpoints", 1, write_model=tiny_model.write_into, optimizer=optimizer, state={})
        tiny_model.encoder.save(tmp_path / "encoder")
    finally:
        os.umask(previous)
    for root in (run / "model", run / "checkpoints" / "checkpoint-1", tmp_path / "encoder"):
        files = {str(path.relative_to(root)): path for path in root.rglob("*") if path.is_file()}
        folders = {str(path.relative_to(root)): path for path in [root, *root.rglob("*")] if path.is_dir()}
        assert "model.safetensors" in files and "1_Pooling" in folders
        assert {name: oct(stat.S_IMODE(path.stat().st_mode)) for name, path in files.items()} == {
            name: oct(file_mode) for name in files
        }
        assert {name: oct(stat.S_IMODE(path.stat().st_mode)) for name, path in folders.items()} == {
            name: oct(folder_mode) for name in folders
        }
    checkpoint_files = {path.name for path in (run / "checkpoints" / "checkpoint-1").iterdir()}
    assert {"optimizer.safetensors", "rng.safetensors", "head.safetensors"} <= checkpoint_files


def test_a_shared_group_folder_keeps_its_setgid_bit(tiny_model, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    if not os.stat(shared).st_mode & stat.S_ISGID:
        pytest.skip("this file system ignores the setgid bit")
    tiny_model.save(shared / "model")
    assert os.stat(shared / "model").st_mode & stat.S_ISGID
    assert os.stat(shared / "model" / "1_Pooling").st_mode & stat.S_ISGID


# ----------------------------------------------------------------------------- real kills

WRITER = r"""
import itertools, os, signal, sys
from pathlib import Path

mode, run, kill_at, when = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
watched = {str(run), str(run / "model")}
real_replace = os.replace
calls = 0


def replace(source, destination):  # SIGKILL this process at the kill_at-th rename inside the run
    global calls
    if os.path.dirname(os.fspath(destination)) in watched:
        calls += 1
        if calls == kill_at and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(source, destination)
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    else:
        real_replace(source, destination)


os.replace = replace
from labelspace.cli import main
from labelspace.models import LabelspaceModel

model = LabelspaceModel.from_pretrained(run / "model") if mode == "save" else None
for step in itertools.count():
    value = (step % 9 + 1) / 10
    if mode == "save":
        model.set_thresholds(value)
        model.save(run / "model", overwrite=True)
    else:
        command = ["tune-thresholds", str(run), "--data", sys.argv[5], "--quiet"] if step % 2 else None
        command = command or ["set-thresholds", str(run), ",".join(f"{name}={value}" for name in sys.argv[6:])]
        try:
            main(command)
        except SystemExit as done:
            assert not done.code, done.code
    if step == 0:
        (run.parent / "ready").touch()
"""


@pytest.fixture(scope="module")
def writer_script(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("writer")
    (folder / "writer.py").write_text(WRITER)
    save(demo("dev").subset(range(24)), folder / "dev.jsonl")
    return folder


def start_writer(writer_script: Path, mode: str, run: Path, kill_at: int = 0, when: str = "after"):
    command = [sys.executable, str(writer_script / "writer.py"), mode, str(run), str(kill_at), when]
    command += [str(writer_script / "dev.jsonl"), *LABELS]
    environment = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)


def kill_at_random(writer: subprocess.Popen, ready: Path, rng: random.Random) -> None:
    """SIGKILL ``writer`` at a random moment after its first complete write."""
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert writer.poll() is None, writer.stderr.read().decode()
        assert time.monotonic() < deadline, "the writer never finished its first write"
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.25))
    writer.send_signal(signal.SIGKILL)
    writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL


def predict_in_a_subprocess(run: Path) -> None:
    command = [sys.executable, "-m", "labelspace.cli", "predict", str(run), "I was charged twice"]
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["text"] == "I was charged twice"


def assert_healed(run: Path, *, uniform: bool = True) -> None:
    """The run has one model, with thresholds a writer saved, and no hidden leftovers beside it or inside it.

    ``uniform``: every label has the same threshold, one of `THRESHOLDS` or 0.5 (else tuned ones in [0, 1]).
    """
    assert hidden_entries(run, run / "model") == []
    assert sorted(os.listdir(run)) == ["model"]
    thresholds = json.loads((run / "model" / "labelspace.json").read_text())["thresholds"]
    assert len(thresholds) == len(LABELS) and all(0.0 <= value <= 1.0 for value in thresholds), thresholds
    if uniform:
        assert len(set(thresholds)) == 1 and thresholds[0] in [*THRESHOLDS, 0.5], thresholds


@pytest.mark.parametrize(
    ("kill_at", "left_behind"),
    [
        (1, [".model.new-", "model"]),  # the new copy is complete, the old one still in place
        (2, [".model.new-", ".model.old-"]),  # between the two renames: no model/ at all
        (3, [".model.old-", "model"]),  # replaced; the old copy not yet deleted
    ],
)
def test_a_save_killed_at_each_rename_heals_on_the_next_predict(
    tiny_model, writer_script, tmp_path, kill_at, left_behind
):
    run = new_run(tiny_model, tmp_path / "run", 0.5)
    writer = start_writer(writer_script, "save", run, kill_at)
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == -signal.SIGKILL, err.decode()
    found = sorted(os.listdir(run))
    assert [name if name == "model" else name[: len(".model.new-")] for name in found] == left_behind
    predict_in_a_subprocess(run)
    assert_healed(run)
    expected = 0.5 if kill_at == 1 else 0.1  # the first save writes 0.1: finished from kill 2 on
    assert json.loads((run / "model" / "labelspace.json").read_text())["thresholds"][0] == expected


def test_a_threshold_rewrite_killed_before_its_rename_heals_on_the_next_predict(tiny_model, writer_script, tmp_path):
    run = new_run(tiny_model, tmp_path / "run", 0.5)
    writer = start_writer(writer_script, "rewrite", run, 1, "before")
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == -signal.SIGKILL, err.decode()
    leftovers = hidden_entries(run, run / "model")
    assert len(leftovers) == 1 and leftovers[0].startswith("model/.labelspace.json.tmp-"), leftovers
    predict_in_a_subprocess(run)
    assert_healed(run)
    assert json.loads((run / "model" / "labelspace.json").read_text())["thresholds"][0] == 0.5


@pytest.mark.parametrize(("mode", "trials", "seed"), [("save", 6, 10), ("rewrite", 5, 11)])
def test_writers_killed_at_random_moments_always_heal(tiny_model, writer_script, tmp_path, run_cli, mode, trials, seed):
    """Real SIGKILLs at seeded random moments of a writer looping saves (or tune/set-thresholds)."""
    rng = random.Random(seed)
    run = new_run(tiny_model, tmp_path / "run", 0.5)
    interrupted = 0
    for trial in range(trials):
        (tmp_path / "ready").unlink(missing_ok=True)
        kill_at_random(start_writer(writer_script, mode, run), tmp_path / "ready", rng)
        interrupted += bool(hidden_entries(run, run / "model")) or not (run / "model").is_dir()
        if trial == trials - 1:
            predict_in_a_subprocess(run)
        else:
            code, out, err = run_cli("predict", str(run), "I was charged twice")
            assert code == 0, err
            assert json.loads(out.splitlines()[0])["text"] == "I was charged twice"
        assert_healed(run, uniform=mode == "save")
    if mode == "save":  # the save loop is writing nearly all the time (a rewrite of labelspace.json is brief)
        assert interrupted >= 1, "no kill landed during a save: the test did not exercise recovery"
