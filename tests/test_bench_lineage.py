"""The stage-1 lineage benchmark's own logic: the bare-epoch arithmetic, the goal, the table and when a
run counts as finished. Nothing is trained here."""
import argparse
import json
import os
import time
from dataclasses import replace

import pytest

from bench import knn_fmnist as bench
from train.methods import METHODS


def fake_result(label, knn, bare_epochs):
    run = replace(bench.lineage_run("instdisc", bench.FULL), label=label)
    return bench.Result(run, knn, minutes=10.0, bare_epochs=bare_epochs, curve=[(1, 1.0, 70.0)])


def test_a_bare_epoch_is_the_median_step_times_the_full_batches_of_60k_images():
    assert bench.bare_epoch_seconds([0.5, 0.4, 9.0]) == pytest.approx(0.5 * 234)  # 60000 // 256 full batches


def test_the_curve_counts_the_time_before_the_first_epoch_and_ends_at_the_whole_training():
    bare = bench.cumulative_bare_epochs([30.0, 20.0], train_seconds=60.0, bare_epoch=10.0)
    assert bare == pytest.approx([4.0, 6.0])  # 10 s of data and prefill, then the epochs


def test_the_goal_needs_both_more_than_raw_pixels_and_at_most_nine_bare_epochs():
    assert bench.meets_goal(80.0, 79.1, 9.0)
    assert not bench.meets_goal(79.0, 79.1, 3.0)
    assert not bench.meets_goal(85.0, 79.1, 9.5)


def test_the_table_holds_the_baselines_then_each_method_with_its_verdict():
    base = {bench.PIXELS: 79.13, "resnet18, random": 78.58}
    text = bench.table([fake_result("Fast", 81.9, 6.8), fake_result("Slow", 81.0, 12.3)], base, 79.13)
    rows = text.strip().splitlines()
    assert rows[2] == "| raw pixels (784-d) | 79.13 | - | - | - |"
    epochs = METHODS["instdisc"].PRESETS["fmnist"].epochs
    assert rows[4] == f"| Fast (`resnet18`, {epochs} epochs, batch 256) | 81.90 | 10.0 | 6.8 | yes |"
    assert rows[5].endswith("| 12.3 | no |")
    short = bench.shortfalls([fake_result("Slow", 81.0, 12.3)], 79.13)
    assert "Slow: kNN 81.00% against raw pixels' 79.13%, after 12.3 bare epochs" in short
    assert "it needs more than the budget of 9 bare epochs" in short


def test_a_shortfall_says_what_the_monitor_says_of_why():
    falling = replace(fake_result("Falling", 77.2, 2.7), curve=[(1, 1.3, 73.1), (2, 2.7, 72.2)])
    rising = replace(fake_result("Rising", 78.0, 4.0), curve=[(1, 2.0, 70.0), (2, 4.0, 74.0)])
    falling_says, rising_says = bench.shortfall(falling, 79.13), bench.shortfall(rising, 79.13)
    assert "peaked at 73.1% after epoch 1 and fell to 72.2%, with 6.3 bare epochs of the budget unused" in falling_says
    assert "still rising, with 5.0 bare epochs unused" in rising_says and "peaked" not in rising_says


def test_methods_default_to_every_registered_one_with_an_fmnist_preset_and_unknown_names_are_refused():
    assert bench.methods_with_preset() == [m for m in METHODS if "fmnist" in METHODS[m].PRESETS]
    assert bench.parse_methods("instdisc, invaspread") == ["instdisc", "invaspread"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown method 'swav'; choose from instdisc"):
        bench.parse_methods("instdisc,swav")


def test_quick_and_sweep_runs_never_share_a_folder_or_an_exported_name_with_the_full_run():
    runs = [bench.lineage_run("instdisc", bench.FULL), bench.lineage_run("instdisc", bench.QUICK),
            bench.lineage_run("instdisc", bench.FULL, ("negatives", "m", 256))]
    assert runs[0].name == "instdisc-resnet18-fmnist" and runs[0].folder.name == "bench-instdisc-fmnist"
    assert len({r.folder for r in runs}) == len({r.name for r in runs}) == 3
    assert runs[1].cfg.epochs == 1 and runs[1].cfg.subset == 2048
    assert runs[2].cfg.method["negatives"] == 256 and runs[2].label == "InstDisc, m = 256"


def finished_run(tmp_path, monkeypatch, epochs_logged=4, config=None):
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    run = bench.lineage_run("instdisc", bench.FULL)
    run.folder.mkdir(parents=True)
    (run.folder / "metrics.csv").write_text("epoch,knn_top1,seconds\n" + "".join(
        f"{e},70,100\n" for e in range(1, epochs_logged + 1)))
    export = tmp_path / "zoo" / run.name
    export.mkdir(parents=True)
    (export / "config.json").write_text("{}")
    (export / "model.safetensors").write_bytes(b"")
    record = {"config": config or bench.as_json(run.cfg), "export": str(export)}
    (run.folder / bench.RECORD).write_text(json.dumps(record))
    return run


def test_a_complete_run_of_the_current_preset_is_reused(tmp_path, monkeypatch):
    assert bench.finished(finished_run(tmp_path, monkeypatch)) is not None


def test_a_run_cut_short_is_trained_again(tmp_path, monkeypatch):
    assert bench.finished(finished_run(tmp_path, monkeypatch, epochs_logged=2)) is None


def test_a_run_of_another_config_is_trained_again(tmp_path, monkeypatch):
    other = bench.as_json(bench.lineage_run("instdisc", bench.FULL).cfg.override(lr=0.1))
    assert bench.finished(finished_run(tmp_path, monkeypatch, config=other)) is None


def test_without_a_clock_an_unfinished_run_is_left_out_not_trained(tmp_path, monkeypatch):
    run = finished_run(tmp_path, monkeypatch, epochs_logged=2)
    assert bench.outcome(run, skip_trained=False, clock=None) is None  # --curves-only, or the sweep not asked for


def test_a_superseded_section_is_removed_and_the_others_kept(tmp_path, monkeypatch):
    from bench import report

    monkeypatch.setattr(report, "REPORT", tmp_path / "BENCHMARKS.md")
    report.REPORT.write_text("# B\n\n## Kept\n\nk\n\n## Old table\n\nold\n\n## Later\n\nl\n")
    report.remove_section("Old table")
    text = report.REPORT.read_text()
    assert "Old table" not in text and "old" not in text
    assert text.index("## Kept") < text.index("## Later") and "\nk\n" in text and "\nl\n" in text


def interrupted_run(tmp_path, monkeypatch, sessions, saved_at, config=None):
    """A run folder as a session that ended mid-run leaves it: the sessions so far and the last checkpoint."""
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    run = bench.lineage_run("instdisc", bench.FULL)
    run.folder.mkdir(parents=True)
    (run.folder / bench.SESSIONS).write_text(json.dumps(dict(config=config or bench.as_json(run.cfg),
                                                             sessions=sessions)))
    checkpoint = run.folder / bench.CHECKPOINT
    checkpoint.write_bytes(b"")
    os.utime(checkpoint, (saved_at, saved_at))
    return run


def test_a_killed_session_counts_up_to_its_last_checkpoint_in_its_own_bare_epochs(tmp_path, monkeypatch):
    done = dict(seconds=100.0, bare_epoch=50.0)
    run = interrupted_run(tmp_path, monkeypatch, [done, dict(began=1000.0, bare_epoch=40.0)], saved_at=1300.0)
    assert bench.earlier_sessions(run) == [done, dict(seconds=300.0, bare_epoch=40.0, killed=True)]


def test_a_session_killed_before_its_first_checkpoint_counts_nothing(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch, [dict(began=1000.0, bare_epoch=40.0)], saved_at=900.0)
    assert bench.earlier_sessions(run)[0]["seconds"] == 0.0


def test_an_interrupted_run_of_another_config_is_not_resumed(tmp_path, monkeypatch):
    other = bench.as_json(bench.lineage_run("instdisc", bench.FULL).cfg.override(lr=0.1))
    run = interrupted_run(tmp_path, monkeypatch, [dict(began=1000.0, bare_epoch=40.0)], 1300.0, config=other)
    assert bench.earlier_sessions(run) == []


def test_a_resumed_run_sums_its_sessions_each_in_its_bare_epochs(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch, [dict(began=1000.0, bare_epoch=40.0)], saved_at=1200.0)
    calls = []

    def fit(method, preset, cfg, out, resume=False, name=None):
        calls.append(resume)
        checkpoint = out / bench.CHECKPOINT
        os.utime(checkpoint, (time.time() + 50, time.time() + 50))  # this session trains 50 s more
        return tmp_path / "zoo" / name

    class Clock:
        measured = [20.0]

        def measure(self):
            return 30.0

    monkeypatch.setattr(bench, "fit", fit)
    record = bench.train(run, Clock())
    assert calls == [True]
    assert record["train_seconds"] == pytest.approx(250.0, abs=2)
    bare_epochs = record["train_seconds"] / record["bare_epoch_seconds"]
    assert bare_epochs == pytest.approx(200 / 40 + 50 / 25, abs=0.1)  # each session over its own bare epoch
    assert not (run.folder / bench.SESSIONS).exists()
