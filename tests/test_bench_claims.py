"""The claims benchmark's own logic: which runs a claim needs, and what it reports. Nothing is trained here."""
import argparse
import json

import pytest

from bench import claims
from bench import knn_fmnist as lineage


def test_a_claim_is_its_variants_and_the_lineages_own_run_in_order_of_value():
    runs = claims.CLAIMS["moco-queue"].runs(lineage.FULL)
    assert [run.cfg.method["queue_size"] for run in runs] == [256, 4096, 16384]
    assert runs[1].folder == lineage.lineage_run("moco", lineage.FULL).folder  # the preset's run is shared
    assert [run.label for run in runs] == ["MoCo, K = 256", "MoCo, K = 4096", "MoCo, K = 16384"]
    assert len({run.folder for run in runs}) == len({run.name for run in runs}) == 3
    assert all(run.cfg.epochs == runs[1].cfg.epochs and run.cfg.lr == runs[1].cfg.lr for run in runs)


def test_a_claim_with_a_base_sweeps_from_the_changed_preset_and_shares_its_run():
    claim = claims.CLAIMS["moco-queue-m0.999"]
    runs = claim.runs(lineage.FULL)
    assert [(run.cfg.method["queue_size"], run.cfg.method["momentum"]) for run in runs] == [
        (256, 0.999), (4096, 0.999), (16384, 0.999)]
    assert runs[1].folder == claims.CLAIMS["moco-momentum"].variants(lineage.FULL)[1].folder  # m = 0.999's own run
    assert [run.label for run in runs] == ["MoCo, m = 0.999, K = 256", "MoCo, m = 0.999, K = 4096",
                                           "MoCo, m = 0.999, K = 16384"]
    assert runs[0].name == "moco-resnet18-fmnist-m0.999-K256" and runs[0].name in claims.ablations()
    assert len({run.folder for run in runs + claims.CLAIMS["moco-queue"].runs(lineage.FULL)}) == 6  # no run shared
    text = claims.claim_text("moco-queue-m0.999", claim, [], [], None)
    assert "Not yet measured: `python -m bench.claims --claims moco-queue-m0.999 --train --skip-trained`" in text


def test_momentum_claim_covers_zero_and_the_papers_value():
    values = [run.cfg.method["momentum"] for run in claims.CLAIMS["moco-momentum"].runs(lineage.FULL)]
    assert values == [0.0, 0.99, 0.999]


def test_a_key_the_preset_leaves_to_the_methods_default_reads_as_that_default():
    """SimSiam's preset sets no stop_gradient (so its lineage run's config stays the preset's): its own run is True."""
    claim = claims.CLAIMS["simsiam-stop-gradient"]
    runs = claim.runs(lineage.FULL)
    assert [claim.value(run) for run in runs] == [False, True]
    assert "stop_gradient" not in runs[1].cfg.method and runs[1].folder == lineage.lineage_run("simsiam", lineage.FULL).folder


def test_the_ablations_are_the_claims_variants_not_the_presets_own_runs():
    names = claims.ablations()
    assert {"moco-resnet18-fmnist-K256", "moco-resnet18-fmnist-K16384", "moco-resnet18-fmnist-m0.0"} <= names
    assert lineage.lineage_run("moco", lineage.FULL).name not in names
    assert lineage.lineage_run("instdisc", lineage.FULL).name not in names


def test_unknown_claims_are_refused_with_the_choices():
    assert claims.parse_claims("moco-queue, moco-momentum") == ["moco-queue", "moco-momentum"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown claim moco-k; choose from instdisc-negatives"):
        claims.parse_claims("moco-k")


def test_a_claim_with_no_finished_run_says_how_to_run_it(tmp_path, monkeypatch):
    monkeypatch.setattr(lineage, "ROOT", tmp_path)
    claim = claims.CLAIMS["moco-queue"]
    results, missing = claims.claim_results(claim, lineage.FULL, train=False, skip_trained=True, clock=None)
    assert results == [] and [run.cfg.method["queue_size"] for run in missing] == [256, 4096, 16384]
    text = claims.claim_text("moco-queue", claim, results, missing, None)
    assert "Not yet measured" in text and "--claims moco-queue --train" in text and "|" not in text


def measured(claim, knns):
    return [lineage.Result(run, knn, 10.0, 6.0, [(1, 6.0, knn)]) for run, knn in zip(claim.runs(lineage.FULL), knns)]


def test_a_measured_claim_is_a_table_by_value_and_its_figure(tmp_path):
    claim = claims.CLAIMS["moco-queue"]
    results = measured(claim, (80.0, 82.5, 83.0))
    figure = claims.plot(claim, results, tmp_path / "claim.png")
    text = claims.claim_text("moco-queue", claim, results, [], figure)
    assert "| 256 | 80.00 | - | 6.0 |" in text and "| 16384 | 83.00 | - | 6.0 |" in text
    assert figure.stat().st_size > 0 and str(figure) in text and "Not yet measured" not in text
    assert "- kNN: As the paper: kNN rises with K at every step (80.00 < 82.50 < 83.00)." in text
    assert "- Linear, the paper's measure: not read for every run" in text


def test_a_claim_read_by_the_linear_protocol_gets_its_column_and_its_own_verdict(tmp_path):
    claim = claims.CLAIMS["moco-queue"]
    results = measured(claim, (81.8, 79.9, 78.2))
    figure = claims.plot(claim, results, tmp_path / "claim.png", [84.0, 85.0, 86.0])
    text = claims.claim_text("moco-queue", claim, results, [], figure, [84.0, 85.0, 86.0])
    assert "| 256 | 81.80 | 84.00 | 6.0 |" in text and "| 16384 | 78.20 | 86.00 | 6.0 |" in text
    assert "- kNN: Not as the paper here: kNN does not rise from K = 256 to K = 4096 (81.80 to 79.90)" in text
    assert "- Linear, the paper's measure: As the paper: linear top-1 rises with K at every step (84.00 < 85.00 < 86.00)." in text


def test_the_verdict_names_where_the_measured_order_departs_from_the_papers():
    queue, momentum = claims.CLAIMS["moco-queue"], claims.CLAIMS["moco-momentum"]
    assert claims.verdict(queue, measured(queue, (80.96, 80.21, 81.0))) == (
        "Not as the paper here: kNN does not rise from K = 256 to K = 4096 (80.96 to 80.21).")
    assert claims.verdict(queue, measured(queue, (81.0, 81.0, 80.0))).count("from K =") == 2  # a tie is no rise
    # momentum: the claim is that m = 0 fails, whatever the order of the slow encoders
    assert claims.verdict(momentum, measured(momentum, (72.6, 80.2, 79.9))) == (
        "As the paper: m = 0.0 trails every other value, by 7.30 points or more.")
    assert claims.verdict(momentum, measured(momentum, (80.0, 79.0, 81.0))).startswith("Not as the paper here")
    # temperature: lower is better, so kNN must fall as T rises
    temperature = claims.CLAIMS["simclr-temperature"]
    assert [run.cfg.method["temperature"] for run in temperature.runs(lineage.FULL)] == [0.1, 0.5]
    assert claims.verdict(temperature, measured(temperature, (81.22, 78.18))) == (
        "As the paper: kNN falls with T at every step (81.22 > 78.18).")
    assert claims.verdict(temperature, measured(temperature, (78.0, 78.0))) == (
        "Not as the paper here: kNN does not fall from T = 0.1 to T = 0.5 (78.00 to 78.00).")


def test_a_partial_claim_shows_what_is_measured_and_names_the_missing_values(tmp_path):
    claim = claims.CLAIMS["moco-queue"]
    runs = claim.runs(lineage.FULL)
    results = measured(claim, (80.0, 82.5))  # K = 256 and 4096 finished, 16384 not
    text = claims.claim_text("moco-queue", claim, results, runs[2:], None)
    assert "| 256 | 80.00 | - | 6.0 |" in text and "| 4096 | 82.50 | - | 6.0 |" in text and "| 16384 |" not in text
    assert "As the paper" not in text and "Not as the paper" not in text  # no verdict on a partial sweep
    assert "Not yet measured: K = 16384" in text and "--claims moco-queue --train --skip-trained" in text


def test_a_claim_predicting_an_ordering_the_verdict_cannot_check_is_refused():
    with pytest.raises(ValueError, match="rises, falls, fails, not 'drops'"):
        claims.Claim("moco", "momentum", "m", (0.0,), "says", predicts="drops")


def test_the_head_claim_reads_both_temperatures_and_holds_only_if_h_wins_in_each():
    assert [run.cfg.method["temperature"] for run in claims.simclr_runs(lineage.FULL)] == [0.1, 0.5]
    h, z = claims.BEFORE, claims.AFTER
    both = {0.5: {"knn": {h: 78.18, z: 76.56}, "linear": {h: 84.0, z: 80.0}},
            0.1: {"knn": {h: 81.22, z: 81.72}, "linear": {h: 86.5, z: 85.0}}}
    text = claims.head_text(both)
    assert text.index("| 0.1 | 81.22 | 81.72 | 86.50 | 85.00 |") < text.index("| 0.5 | 78.18 | 76.56 | 84.00 | 80.00 |")
    assert "kNN: not as the paper in every run, h - z is T = 0.1: -0.50 points; T = 0.5: +1.62 points." in text
    assert "linear: as the paper, h beats z in every run (h - z: T = 0.1: +1.50 points; T = 0.5: +4.00 points)." in text
    assert claims.head_verdict({0.5: both[0.5]}, "knn").startswith("kNN: as the paper")
    assert "Not yet measured" in claims.head_text({})


def test_the_head_reading_is_taken_once_and_kept_so_the_claim_rebuilds_without_the_runs_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(lineage, "ROOT", tmp_path)
    (tmp_path / "bench" / "records").mkdir(parents=True)
    run = claims.simclr_runs(lineage.FULL)[0]
    readings = []
    reading = {"knn": {claims.BEFORE: 81.0, claims.AFTER: 79.0}, "linear": {claims.BEFORE: 85.0, claims.AFTER: 82.0}}
    monkeypatch.setattr(claims, "measure_head", lambda run, data: readings.append(run) or reading)
    here = {}
    monkeypatch.setattr(lineage, "finished", lambda r: here["record"] if r is run else None)
    monkeypatch.setattr(lineage, "committed", lambda r: here.get("committed") if r is run else None)

    here["record"] = None
    assert claims.before_and_after_head(run, None) is None and readings == []  # not trained: nothing to read
    here["record"] = {"date": "2026-12-02"}
    first = claims.before_and_after_head(run, None)
    assert first == reading and len(readings) == 1
    kept = json.loads(claims.reading_path(run, "head").read_text())
    assert kept == {"run_date": "2026-12-02", **reading}
    here["record"], here["committed"] = None, {"date": "2026-12-02"}  # another machine: the record, no folder
    assert claims.before_and_after_head(run, None) == first and len(readings) == 1
    here["committed"] = {"date": "2026-12-03"}  # retrained since: the kept reading is of another run
    assert claims.before_and_after_head(run, None) is None and len(readings) == 1
    here["record"] = {"date": "2026-12-02"}  # a reading kept before the linear protocol: measured again
    claims.reading_path(run, "head").write_text(json.dumps({"run_date": "2026-12-02", "knn": reading["knn"]}))
    assert claims.before_and_after_head(run, None) == reading and len(readings) == 2


def test_the_linear_reading_is_kept_and_a_simclr_runs_comes_from_its_head_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(lineage, "ROOT", tmp_path)
    (tmp_path / "bench" / "records").mkdir(parents=True)
    moco, simclr = lineage.lineage_run("moco", lineage.FULL), claims.simclr_runs(lineage.FULL)[0]
    probes = []
    monkeypatch.setattr(claims, "measure_linear", lambda run, data: probes.append(run) or {"linear": 85.25})
    monkeypatch.setattr(lineage, "finished", lambda r: {"date": "2026-12-02"})
    monkeypatch.setattr(lineage, "committed", lambda r: None)
    assert claims.linear_reading(moco, None) == 85.25 and claims.linear_reading(moco, None) == 85.25
    assert probes == [moco]  # probed once, then read from what was kept
    assert json.loads(claims.reading_path(moco, "linear").read_text()) == {"run_date": "2026-12-02", "linear": 85.25}
    head = {"run_date": "2026-12-02", "knn": {claims.BEFORE: 82.0, claims.AFTER: 82.3},
            "linear": {claims.BEFORE: 86.61, claims.AFTER: 83.72}}
    claims.reading_path(simclr, "head").write_text(json.dumps(head))
    assert claims.linear_reading(simclr, None) == 86.61 and probes == [moco]  # h is the export: no second probe
    variant = claims.simclr_runs(lineage.FULL)[1]  # no head reading kept yet: the head is read, once, for both
    heads = []
    monkeypatch.setattr(claims, "measure_head", lambda run, data: heads.append(run) or {k: head[k] for k in ("knn", "linear")})
    assert claims.linear_reading(variant, None) == 86.61 and heads == [variant] and probes == [moco]
    assert claims.before_and_after_head(variant, None)["knn"] == head["knn"] and heads == [variant]
    assert not claims.reading_path(variant, "linear").exists()
