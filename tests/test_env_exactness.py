"""Exactness against DeepMind's reference: traces replay bit for bit; chemistry prior matches."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from alchemy_mbrl.cli import main
from alchemy_mbrl.env import AlchemyEnv, Chemistry
from alchemy_mbrl.env.chemistry import (
    GRAPH_EDGES,
    GRAPH_NUM_CONSTRAINTS,
    GRAPH_PROBS,
    GRAPH_RULES,
    NUM_CHEMISTRIES,
    all_chemistries,
    chemistry_prior,
    graph_key,
    sample_chemistries,
)
from alchemy_mbrl.env.replay import load_traces, replay_traces

from .conftest import CHEMISTRY_FREQUENCIES


def record_traces(n: int, seed: int) -> dict[str, np.ndarray]:
    """Traces in the SPEC §11 format, recorded from our own environment (for failure-path tests)."""
    rng = np.random.default_rng(seed)
    env = AlchemyEnv(n, seed=seed)
    ts = env.reset()
    chem, items = env.chemistry, env.items
    obs, rew, disc, st = [ts.observation], [], [], [ts.step_type]
    actions = rng.integers(0, 40, size=(n, 200)).astype(np.int16)
    for t in range(200):
        ts = env.step(actions[:, t])
        obs.append(ts.observation), rew.append(ts.reward), disc.append(ts.discount), st.append(ts.step_type)
    from alchemy_mbrl.env.chemistry import VERTEX_COORDS

    return {
        "potion_perm": chem.potion_perm, "potion_sign": chem.potion_sign, "stone_sign": chem.stone_sign,
        "graph_edges": chem.graph_edges, "graph_id": chem.graph_id,
        "stones": VERTEX_COORDS[items.stones.astype(int)], "potions": items.potions, "actions": actions,
        "obs": np.stack(obs, 1), "rewards": np.stack(rew, 1), "discount": np.stack(disc, 1), "step_type": np.stack(st, 1),
    }


def test_golden_traces_replay_exactly(golden_traces_path):
    report = replay_traces(load_traces(golden_traces_path))
    assert report.first_divergence is None, str(report.first_divergence)
    assert report.matched == report.episodes == 200


def test_replay_cli_on_golden_traces(golden_traces_path):
    out = subprocess.run(
        [sys.executable, "-m", "alchemy_mbrl.cli", "env", "replay", "--traces", str(golden_traces_path)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "200/200 episodes match exactly" in out.stdout


def test_golden_chemistry_and_derived_arrays_agree(golden_traces_path):
    d = load_traces(golden_traces_path)
    chem = Chemistry(d["potion_perm"], d["potion_sign"], d["stone_sign"], d["graph_id"])
    assert np.array_equal(chem.colour_of_latent, d["potion_colour_of_latent"])
    assert np.array_equal(chem.graph_edges, d["graph_edges"])


def test_replay_reports_first_divergence(tmp_path, capsys):
    traces = record_traces(5, seed=3)
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, **traces)
    assert main(["env", "replay", "--traces", str(path)]) == 0
    assert "5/5 episodes match" in capsys.readouterr().out

    bad = {k: v.copy() for k, v in traces.items()}
    bad["obs"][2, 57, 16] = 0.5  # a potion-used flag can never be 0.5
    bad["rewards"][4, 10] += 1.0
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, **bad)
    assert main(["env", "replay", "--traces", str(path)]) == 1
    out = capsys.readouterr().out
    assert "3/5 episodes match" in out
    assert "episode 2, step 57, observation, feature 16: expected 0.5" in out


def test_replay_rejects_missing_or_malformed_file(tmp_path, capsys):
    assert main(["env", "replay", "--traces", str(tmp_path / "nope.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    np.savez(tmp_path / "partial.npz", actions=np.zeros((2, 200)))
    assert main(["env", "replay", "--traces", str(tmp_path / "partial.npz")]) == 2
    assert "missing arrays" in capsys.readouterr().err


def test_graph_enumeration_matches_appendix_a():
    assert len(GRAPH_RULES) == 109
    counts = {k: int((GRAPH_NUM_CONSTRAINTS == k).sum()) for k in range(4)}
    assert counts == {0: 1, 1: 12, 2: 48, 3: 48}
    assert np.isclose(GRAPH_PROBS.sum(), 1.0)
    edges = GRAPH_EDGES.sum(axis=1)
    assert set(edges[GRAPH_NUM_CONSTRAINTS == 3]) == {7}
    assert set(edges[GRAPH_NUM_CONSTRAINTS == 1]) == {10}
    assert sorted(np.unique(edges[GRAPH_NUM_CONSTRAINTS == 2], return_counts=True)[1]) == [12, 36]
    assert GRAPH_RULES[0] == "--/*-/**" and graph_key(GRAPH_EDGES[0]) == "111110110000"
    assert GRAPH_RULES[108] == "**/**/**" and GRAPH_EDGES[108].all()
    assert len({graph_key(e) for e in GRAPH_EDGES}) == 109


def test_graph_table_matches_golden_frequency_file():
    if not CHEMISTRY_FREQUENCIES.exists():
        pytest.skip(f"{CHEMISTRY_FREQUENCIES} not found")
    ref = json.loads(CHEMISTRY_FREQUENCIES.read_text())
    for key, entry in ref["graph"].items():
        g = entry["id"]
        assert graph_key(GRAPH_EDGES[g]) == key
        assert GRAPH_RULES[g] == entry["rule"]
        assert GRAPH_NUM_CONSTRAINTS[g] == entry["num_constraints"]
        assert np.isclose(GRAPH_PROBS[g], entry["prob"])
    for key, entry in ref["potion_map"].items():
        chem = Chemistry.from_indices([entry["index"]], [0], [0])
        perm = "".join(str(x) for x in chem.potion_perm[0])
        signs = "".join("+" if x > 0 else "-" for x in chem.potion_sign[0])
        assert key == f"{perm}|{signs}"
    for key, entry in ref["stone_map"].items():
        chem = Chemistry.from_indices([0], [entry["index"]], [0])
        assert key == "".join("+" if x > 0 else "-" for x in chem.stone_sign[0])


def test_sampled_chemistry_frequencies_match_reference():
    """Chi-square at a fixed seed: our sampler vs the exact prior, and vs the reference's counts."""
    if not CHEMISTRY_FREQUENCIES.exists():
        pytest.skip(f"{CHEMISTRY_FREQUENCIES} not found")
    ref = json.loads(CHEMISTRY_FREQUENCIES.read_text())
    n = ref["n_chemistries"]
    chem = sample_chemistries(np.random.default_rng(20211), n)
    ours = {
        "graph": np.bincount(chem.graph_id, minlength=109),
        "potion_map": np.bincount(chem.potion_map_index, minlength=48),
        "stone_map": np.bincount(chem.stone_map_index, minlength=8),
    }
    for table, counts in ours.items():
        ref_counts = np.zeros(len(counts))
        probs = np.zeros(len(counts))
        for entry in ref[table].values():
            idx = entry["id"] if table == "graph" else entry["index"]
            ref_counts[idx], probs[idx] = entry["count"], entry["prob"]
        p_fit = stats.chisquare(counts, probs * n).pvalue
        p_same = stats.chi2_contingency(np.stack([counts, ref_counts])).pvalue
        assert p_fit > 1e-3, f"{table}: sampled counts do not fit the prior (p = {p_fit:.2g})"
        assert p_same > 1e-3, f"{table}: sampled counts differ from the reference's (p = {p_same:.2g})"
    k_counts = np.bincount(GRAPH_NUM_CONSTRAINTS[chem.graph_id], minlength=4)
    assert stats.chisquare(k_counts, [n / 4] * 4).pvalue > 1e-3


def test_all_chemistries_enumeration_and_prior():
    chems = all_chemistries()
    assert len(chems) == NUM_CHEMISTRIES == 41856
    assert np.array_equal(chems.index, np.arange(NUM_CHEMISTRIES))
    prior = chemistry_prior()
    assert np.isclose(prior.sum(), 1.0)
    assert np.isclose(prior[chems.graph_id == 108].sum(), 0.25)
    # every (potion map, stone map) pair appears once per graph
    assert len({(int(m), int(i), int(g)) for m, i, g in zip(chems.potion_map_index, chems.stone_map_index, chems.graph_id)}) == 41856
    round_trip = Chemistry(chems.potion_perm, chems.potion_sign, chems.stone_sign, chems.graph_id)
    assert np.array_equal(round_trip.index, chems.index)
