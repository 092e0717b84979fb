"""The stage-1 lineage benchmark's own logic: the bare-epoch arithmetic, the goal, the table and when a
run counts as finished. Nothing is trained here."""
import argparse
import json
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from bench import knn_fmnist as bench
from bench import presets
from train.methods import METHODS


def fake_result(label, knn, bare_epochs):
    run = replace(bench.lineage_run("instdisc", bench.FULL), label=label)
    return bench.Result(run, knn, minutes=10.0, bare_epochs=bare_epochs, curve=[(1, 1.0, 70.0)])


def test_a_bare_epoch_is_the_median_step_times_the_full_batches_of_60k_images():
    assert bench.bare_epoch_seconds([0.5, 0.4, 9.0]) == pytest.approx(0.5 * 234)  # 60000 // 256 full batches


def stretch(epoch, seconds, before, after):
    return dict(epoch=epoch, seconds=seconds, bare_epoch_before=before, bare_epoch_after=after)


def test_each_epoch_counts_in_the_bare_epochs_measured_at_its_two_ends():
    # the machine slows down during the second epoch: its seconds are divided by the slower yardstick
    record = dict(sessions=[dict(intervals=[stretch(1, 40.0, 10.0, 10.0), stretch(2, 60.0, 10.0, 20.0)])])
    assert bench.spent_by_epoch(record) == pytest.approx({1: 4.0, 2: 8.0})


def test_the_curve_runs_across_sessions_in_epoch_order_and_a_cut_measurement_uses_the_one_before():
    record = dict(sessions=[dict(intervals=[stretch(2, 30.0, 10.0, 30.0)]),  # a resumed session, listed first
                            dict(intervals=[stretch(1, 20.0, 10.0, None)])])  # killed while measuring
    assert bench.spent_by_epoch(record) == pytest.approx({1: 2.0, 2: 3.5})


def test_the_protocol_reports_the_yardstick_the_runs_measured_and_the_command_of_their_scale():
    record = dict(sessions=[dict(intervals=[stretch(2, 30.0, 11.0, 30.0), stretch(1, 20.0, 10.0, None)]),
                            dict(intervals=[stretch(3, 30.0, 40.0, 50.0)])])
    assert bench.yardstick_readings(record) == [10.0, 30.0, 40.0, 50.0]  # each session's first, then each end
    run = bench.lineage_run("instdisc", bench.longer(10))
    reused = bench.Result(run, 84.0, 70.0, 8.9, [(1, 1.0, 78.0)], yardstick=[10.0, 30.0, 50.0])
    clock = SimpleNamespace(scale=bench.longer(10), measured=[99.0])  # this invocation's own measurement
    text = bench.protocol(clock, [reused])
    assert "`python -m bench.knn_fmnist --epochs 10`" in text and "trained 10 epochs" in text
    assert "during the reported runs: median 30.0 s, from 10.0 to 50.0 s over 3 measurements" in text
    assert "99.0" not in text
    assert "in this run: median 99.0 s" in bench.protocol(clock, [replace(reused, yardstick=[])])


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
    assert presets.methods_with_preset() == [m for m in METHODS if "fmnist" in METHODS[m].PRESETS]
    assert presets.parse_methods("instdisc, invaspread") == ["instdisc", "invaspread"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown method 'swaw'; choose from instdisc"):
        presets.parse_methods("instdisc,swaw")


def test_quick_and_sweep_runs_never_share_a_folder_or_an_exported_name_with_the_full_run():
    runs = [bench.lineage_run("instdisc", bench.FULL), bench.lineage_run("instdisc", bench.QUICK),
            bench.lineage_run("instdisc", bench.FULL, ("negatives", "m", 256)),
            bench.lineage_run("instdisc", bench.longer(12))]
    assert runs[0].name == "instdisc-resnet18-fmnist" and runs[0].folder.name == "bench-instdisc-fmnist"
    assert len({r.folder for r in runs}) == len({r.name for r in runs}) == 4
    assert runs[1].cfg.epochs == 1 and runs[1].cfg.subset == 2048
    assert runs[2].cfg.method["negatives"] == 256 and runs[2].label == "InstDisc, m = 256"
    assert runs[3].cfg == runs[0].cfg.override(epochs=12) and runs[3].name == "instdisc-resnet18-fmnist-e12"
    assert [r.kept for r in runs] == [True, False, True, True]  # all but --quick's records are committed


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


def test_a_committed_record_of_the_current_preset_stands_for_a_run_whose_folder_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    run = bench.lineage_run("instdisc", bench.FULL)
    bench.kept_record(run).parent.mkdir(parents=True)
    record = dict(config=bench.as_json(run.cfg), knn=81.5, fit_seconds=600.0, bare_epochs=4.0, date="2026-12-01",
                  curve=[[1, 2.0, 76.0], [2, 4.0, 78.0]])
    bench.kept_record(run).write_text(json.dumps(record))
    assert not run.folder.exists()
    assert bench.outcome(run, skip_trained=True, clock=None) == record
    res = bench.result(run, record)
    assert (res.knn, res.bare_epochs, res.curve[-1], res.per_epoch) == (81.5, 4.0, (2, 4.0, 78.0), False)
    assert "*" in bench.table([res], {}, 79.13)  # an older protocol's row is marked
    stale = dict(record, config=bench.as_json(run.cfg.override(lr=0.1)))
    bench.kept_record(run).write_text(json.dumps(stale))
    assert bench.outcome(run, skip_trained=True, clock=None) is None


def test_only_a_full_runs_record_is_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    for scale in (bench.FULL, bench.QUICK):
        run = bench.lineage_run("cmc", scale)
        run.folder.mkdir(parents=True)
        bench.keep(run, dict(config=bench.as_json(run.cfg)))
        assert (run.folder / bench.RECORD).is_file()
        assert bench.kept_record(run).is_file() == (scale is bench.FULL)


def test_a_run_cut_short_is_trained_again(tmp_path, monkeypatch):
    assert bench.finished(finished_run(tmp_path, monkeypatch, epochs_logged=2)) is None


def test_a_run_of_another_config_is_trained_again(tmp_path, monkeypatch):
    other = bench.as_json(bench.lineage_run("instdisc", bench.FULL).cfg.override(lr=0.1))
    assert bench.finished(finished_run(tmp_path, monkeypatch, config=other)) is None


def test_a_record_from_before_a_config_field_existed_holds_its_default(tmp_path, monkeypatch):
    current = bench.as_json(bench.lineage_run("instdisc", bench.FULL).cfg)
    older = {k: v for k, v in current.items() if k != "lars_classic_momentum"}
    assert bench.finished(finished_run(tmp_path / "older", monkeypatch, config=older)) is not None
    # SimCLR's preset sets the field away from its default: its records from before are stale
    simclr = bench.as_json(bench.lineage_run("simclr", bench.FULL).cfg)
    assert simclr["lars_classic_momentum"] and not bench.is_config(
        {k: v for k, v in simclr.items() if k != "lars_classic_momentum"}, bench.lineage_run("simclr", bench.FULL).cfg)


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


def interrupted_run(tmp_path, monkeypatch, sessions, config=None):
    """A run folder as a session that ended mid-run leaves it: the sessions so far and the last checkpoint."""
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    run = bench.lineage_run("instdisc", bench.FULL)
    run.folder.mkdir(parents=True)
    (run.folder / bench.SESSIONS).write_text(json.dumps(dict(config=config or bench.as_json(run.cfg),
                                                             sessions=sessions)))
    (run.folder / bench.CHECKPOINT).write_bytes(b"")
    return run


def test_a_killed_session_counts_the_epochs_it_checkpointed_each_in_its_own_bare_epochs(tmp_path, monkeypatch):
    done = bench.closed(dict(intervals=[stretch(1, 100.0, 50.0, 50.0)]))
    killed = dict(intervals=[stretch(2, 200.0, 40.0, 40.0), stretch(3, 100.0, 40.0, 60.0)])
    run = interrupted_run(tmp_path, monkeypatch, [done, killed])
    earlier = bench.earlier_sessions(run)
    assert earlier[0] == done and earlier[1]["killed"]
    assert (earlier[1]["seconds"], earlier[1]["bare_epochs"]) == pytest.approx((300.0, 200 / 40 + 100 / 50))


def test_a_session_killed_before_its_first_checkpoint_counts_nothing(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch, [dict(intervals=[])])
    assert bench.earlier_sessions(run)[0]["seconds"] == 0.0


def test_an_interrupted_run_of_another_config_is_not_resumed(tmp_path, monkeypatch):
    other = bench.as_json(bench.lineage_run("instdisc", bench.FULL).cfg.override(lr=0.1))
    run = interrupted_run(tmp_path, monkeypatch, [dict(intervals=[stretch(1, 9.0, 3.0, 3.0)])], config=other)
    assert bench.earlier_sessions(run) == []


def test_a_resumed_run_sums_its_sessions_each_epoch_in_the_bare_epochs_around_it(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch, [dict(intervals=[stretch(1, 200.0, 40.0, 40.0)])])
    now, calls = [1000.0], []

    def fit(method, preset, cfg, out, resume=False, name=None, after_epoch=None):
        calls.append(resume)
        now[0] += 50  # epoch 2 trains 50 s
        after_epoch(2)
        return tmp_path / "zoo" / name

    class Clock:
        measured = [20.0]

        def measure(self):
            pending = json.loads((run.folder / bench.SESSIONS).read_text())["sessions"][-1]
            assert pending["intervals"][-1]["epoch"] == 2  # written before measuring: a kill here keeps the epoch
            now[0] += 40  # the yardstick's own time is not training
            return 30.0

    monkeypatch.setattr(bench, "fit", fit)
    monkeypatch.setattr(bench, "card_knn", lambda folder: 80.0)
    monkeypatch.setattr(bench, "time", SimpleNamespace(time=lambda: now[0], strftime=time.strftime))
    record = bench.train(run, Clock())
    assert calls == [True]
    assert record["train_seconds"] == pytest.approx(250.0)
    assert record["bare_epochs"] == pytest.approx(200 / 40 + 50 / 25)  # each epoch in the yardstick around it
    assert json.loads(bench.kept_record(run).read_text()) == record  # committed, for a machine without the run
    assert not (run.folder / bench.SESSIONS).exists()
