"""Hyperparameter optimisation: ask/tell rounds, determinism, resumption, best point, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from alchemy_mbrl import hpo
from alchemy_mbrl.cli import main

SPACE = hpo.SearchSpace(temperature=(0.05, 2.0), c1=(0.05, 5.0), c2=(0.5, 50.0), k=(1, 5), log_scale=("c1", "c2"))


def score(p: dict) -> float:
    """A smooth synthetic 'mean return', best at T=0.55, C1=0.57, C2=16.15, K=3 (paper's Table 4)."""
    return 200.0 - 50 * (p["temperature"] - 0.55) ** 2 - 10 * (p["c1"] - 0.57) ** 2 - 0.05 * (p["c2"] - 16.15) ** 2 - 3 * abs(p["k"] - 3)


def summaries(points: list[dict]) -> list[dict]:
    return [{"mean": score(p), "sem": 1.0, "n": 10} for p in points]


def run_rounds(rounds: int, points: int, seed: int = 3) -> hpo.HPOState:
    state = hpo.new_state(SPACE, seed=seed, initial_points=4)
    for _ in range(rounds):
        asked = hpo.ask(state, points)
        hpo.tell(state, summaries(asked))
    return state


def test_points_are_valid_planner_params() -> None:
    state = hpo.new_state(SPACE, seed=0, initial_points=4)
    points = hpo.ask(state, 5)
    assert len(points) == 5
    for p in points:
        assert set(p) == {"temperature", "c1", "c2", "k", "gamma"}
        assert isinstance(p["k"], int) and 1 <= p["k"] <= 5
        assert 0.05 <= p["temperature"] <= 2.0 and 0.05 <= p["c1"] <= 5.0 and 0.5 <= p["c2"] <= 50.0
        assert p["gamma"] == 0.99
        json.dumps(p)  # plain Python types
    assert len({tuple(p.values()) for p in points}) == 5, "a batch holds distinct points"


def test_deterministic_given_seed() -> None:
    a, b = run_rounds(3, 2, seed=5), run_rounds(3, 2, seed=5)
    assert a.history == b.history
    c = run_rounds(3, 2, seed=6)
    assert [h["temperature"] for h in a.history] != [h["temperature"] for h in c.history]


def test_resume_from_saved_state_equals_uninterrupted(tmp_path: Path) -> None:
    """Saving and loading the state between every step changes nothing (what the workflow does)."""
    uninterrupted = run_rounds(3, 2, seed=9)
    state = hpo.new_state(SPACE, seed=9, initial_points=4)
    for r in range(3):
        asked = hpo.ask(state, 2)
        hpo.save_state(state, tmp_path / f"round-{r}" / "asked.pkl")
        state = hpo.load_state(tmp_path / f"round-{r}" / "asked.pkl")
        hpo.tell(state, summaries(asked))
        hpo.save_state(state, tmp_path / f"round-{r}" / "state.pkl")
        state = hpo.load_state(tmp_path / f"round-{r}" / "state.pkl")
    assert state.history == uninterrupted.history
    assert state.rounds_told == 3


def test_gp_rounds_improve_on_random_start() -> None:
    """After the random initial points, the GP proposes points at least as good as the best random one."""
    state = run_rounds(6, 2, seed=1)
    random_best = max(h["mean"] for h in state.history[:4])
    assert max(h["mean"] for h in state.history[4:]) >= random_best - 1.0
    assert hpo.best(state)["score"]["mean"] == max(h["mean"] for h in state.history)


def test_best_and_history() -> None:
    state = run_rounds(2, 3, seed=2)
    top = hpo.best(state)
    assert top["score"]["mean"] == max(h["mean"] for h in state.history)
    assert top["trials"] == 6 and top["rounds"] == 2
    rows = hpo.history_rows(state)
    assert [r["trial"] for r in rows] == list(range(6))
    assert [r["round"] for r in rows] == [0, 0, 0, 1, 1, 1]
    running = [r["best_mean"] for r in rows]
    assert running == sorted(running) and running[-1] == top["score"]["mean"]


def test_tell_checks_counts_and_order() -> None:
    state = hpo.new_state(SPACE, seed=0, initial_points=2)
    with pytest.raises(ValueError, match="no pending"):
        hpo.tell(state, [])
    asked = hpo.ask(state, 2)
    with pytest.raises(ValueError, match="never told"):
        hpo.ask(state, 2)
    with pytest.raises(ValueError, match="2 points pending but 1"):
        hpo.tell(state, summaries(asked)[:1])
    with pytest.raises(ValueError, match="no evaluated"):
        hpo.best(state)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": (1.0, 0.5)},
        {"k": (0, 3)},
        {"c1": (0.0, 1.0), "log_scale": ("c1",)},
        {"gamma": 1.5},
        {"log_scale": ("k",)},
    ],
)
def test_bad_space_is_rejected(kwargs: dict) -> None:
    base = dict(temperature=(0.05, 2.0), c1=(0.05, 5.0), c2=(0.5, 50.0), k=(1, 5))
    with pytest.raises(ValueError, match="hpo search space"):
        hpo.SearchSpace(**{**base, **kwargs})


def test_corrupt_state_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "state.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="state.pkl"):
        hpo.load_state(bad)


def test_cli_rounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hpo ask` / `hpo tell` / `hpo best` as the workflow calls them, over two rounds."""
    space = ["--temperature", "0.05", "2", "--c1", "0.05", "5", "--c2", "0.5", "50", "--k", "1", "5"]
    state_in = "none"
    for r in range(2):
        out = tmp_path / f"round-{r}"
        rc = main(["hpo", "ask", "--round", str(r), "--state-in", state_in, "--points", "3", "--seed", "4",
                   "--initial-points", "3", *space, "--log-scale", "c1", "c2", "--out-dir", str(out)])
        assert rc == 0
        results = []
        for p in range(3):
            params = json.loads((out / f"point-{p}.json").read_text())
            assert set(params) == {"temperature", "c1", "c2", "k", "gamma"}
            s = tmp_path / f"s{r}{p}.json"
            s.write_text(json.dumps({"mean": score(params), "sem": 2.0, "n": 8, "std": 5.6}))
            results.append(str(s))
        assert json.loads((out / "points.json").read_text())["round"] == r
        assert main(["hpo", "tell", "--state-in", str(out / "asked.pkl"), "--results", *results,
                     "--state-out", str(out / "state.pkl")]) == 0
        state_in = str(out / "state.pkl")
    # a state cannot start the wrong round
    assert main(["hpo", "ask", "--round", "5", "--state-in", state_in, "--points", "1",
                 "--out-dir", str(tmp_path / "x")]) == 2
    assert "cannot start round 5" in capsys.readouterr().err
    assert main(["hpo", "best", "--state", state_in, "--out", str(tmp_path / "best.json"),
                 "--summary", str(tmp_path / "best_summary.json"), "--history", str(tmp_path / "h.csv")]) == 0
    best = json.loads((tmp_path / "best.json").read_text())
    assert set(best) == {"temperature", "c1", "c2", "k", "gamma"}
    summary = json.loads((tmp_path / "best_summary.json").read_text())
    with open(tmp_path / "h.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert summary["score"]["mean"] == max(float(r["mean"]) for r in rows)
    assert float(rows[-1]["best_mean"]) == summary["score"]["mean"]


def test_cli_fresh_round_needs_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hpo", "ask", "--round", "0", "--state-in", "none", "--points", "2", "--out-dir", str(tmp_path)]) == 2
    assert "--temperature" in capsys.readouterr().err


def test_state_is_json_and_an_edited_state_is_refused(tmp_path: Path) -> None:
    """Issue 25: the state is plain JSON (no pickle: nothing in it can run), and a state whose rounds, scores
    or history were edited is refused naming the file (the replay of the optimizer disagrees with it)."""
    state = run_rounds(2, 2, seed=4)
    hpo.ask(state, 2)  # an asked, not yet told round
    path = tmp_path / "asked.pkl"
    hpo.save_state(state, path)
    d = json.loads(path.read_text())
    assert d["format"] == hpo.STATE_FORMAT and len(d["rounds"]) == 3 and d["rounds"][-1]["told"] is None
    assert hpo.load_state(path).pending == state.pending

    def edited(edit) -> Path:  # noqa: ANN001
        e = json.loads(json.dumps(d))
        edit(e)
        p = tmp_path / "edited.pkl"
        p.write_text(json.dumps(e))
        return p

    for edit, what in ((lambda e: e["rounds"][-1]["asked"][0].__setitem__(0, 0.5), "differs"),
                       (lambda e: e["rounds"][0]["told"].__setitem__(0, -1e6), "differs"),
                       (lambda e: e["history"][0].update(mean=1e6), "history"),
                       (lambda e: e["history"][0].update(sem=-1.0), "sem"),
                       (lambda e: e["history"][0].update(n=2.5), "n"),
                       (lambda e: e.update(rounds_told=7), "rounds_told"),
                       (lambda e: e.update(version=1), "version")):
        with pytest.raises(ValueError, match=what) as info:
            hpo.load_state(edited(edit))
        assert "edited.pkl" in str(info.value)
