"""Regression check of the ideal observer's search: exact (U, N, mass, best action) on recorded states.

``--record`` stores, for many trial roots and every depth-1 child state of each root, the integers
the current implementation gives; ``--check`` (default) asserts the implementation still gives the
very same integers. Roots: trial 0 of ``episode_setup(0, e)`` restricted to its first 6 or 7
potions, and later-trial roots (all 12 potions) after random play of a few trials.

One reference per tie rule (``--tie-rule``, docs/ideal-observer.md "Ties"): ``actions`` (the rule
the search was written with; its reference was recorded from the first, unoptimised search) and
``deepmind`` (the default). The rules change N and the best action only: checking ``deepmind`` also
asserts that U and the mass equal the ``actions`` reference on every state, and prints how many
best actions differ (the best action here uses the default order, the action code).

    PYTHONPATH=src ALCHEMY_THREADS=1 python bench/ideal_observer_regression.py [--tie-rule R] [--record] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path
import time

import numpy as np

from alchemy_mbrl.bayes import initial_posterior
from alchemy_mbrl.bayes.filter import BayesFilter
from alchemy_mbrl.bayes.posterior import CANDIDATE_CLASSES, FLIP_OF_J, constraint_tables
from alchemy_mbrl.env.alchemy import AlchemyEnv
from alchemy_mbrl.env.codec import encode_reward
from alchemy_mbrl.evaluate import episode_setup
from alchemy_mbrl.ideal_observer import DEFAULT_TIE_RULE, TIE_RULES, USED_STONE, TrialSearch, observed_items

HERE = Path(__file__).resolve().parent
#: The recorded reference of each tie rule.
REFERENCE = {"actions": HERE / "ideal_observer_reference.npz", "deepmind": HERE / "ideal_observer_reference_deepmind.npz"}


def roots(n0: int = 20, nlater: int = 6) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(root words [1152], stones [3], counts [6]) of the recorded trial roots."""
    out = []
    chem, items, _ = episode_setup(0, np.arange(n0))
    env = AlchemyEnv(n0, seed=0)
    obs = env.reset(chem, items).observation_codes
    post = initial_posterior(obs)
    for b in range(n0):
        stones, colours, _ = observed_items(obs[b])
        npot = 7 if b % 4 == 0 else 6
        out.append((post[b].copy(), stones, np.bincount(colours[:npot], minlength=6)))
    # later trials: random play through 1..3 trials, then the next trial's root with all 12 potions
    chem, items, _ = episode_setup(1, np.arange(nlater))
    env = AlchemyEnv(nlater, seed=0)
    ts = env.reset(chem, items)
    rng = np.random.default_rng(0)
    filt = BayesFilter(ts.observation_codes)
    for t in range(80):
        if t % 20 == 0 and t > 0:
            for b in range(nlater):
                if b % 3 == t // 20 - 1 or t == 60:
                    stones, _, counts = observed_items(ts.observation_codes[b])
                    out.append((filt.post[b].copy(), stones, counts))
        a = rng.integers(0, 40, size=nlater)
        ts = env.step(a)
        filt.update(a, encode_reward(ts.reward), ts.observation_codes)
    return out


def states(root_words, stones, counts):
    """The root state and every depth-1 child state (words, stones, counts)."""
    sets = constraint_tables().words_full
    out = [(root_words, stones, counts)]
    for s in range(3):
        code = int(stones[s])
        if code == USED_STONE:
            continue
        pv, f = code >> 2, code & 3
        for q in range(6):
            if counts[q] == 0:
                continue
            for cls in CANDIDATE_CLASSES[f]:
                if cls == 16:
                    continue
                w = root_words & sets[(pv * 6 + q) * 16 + cls]
                if not w.any():
                    continue
                st = stones.copy()
                st[s] = ((pv ^ FLIP_OF_J[cls >> 2]) << 2) | (cls & 3)
                c = counts.copy()
                c[q] -= 1
                out.append((w, st, c))
    return out


def compute(tie_rule: str):
    rows = []
    for r, (words, stones, counts) in enumerate(roots()):
        t = time.perf_counter()
        search = TrialSearch(words, tie_rule=tie_rule)
        for w, st, c in states(words, stones, counts):
            bid = search.belief_id(w)
            u, n, m = search.value(bid, st, c)
            best = search.best(bid, st, c)
            rows.append((r, u, n, m, best))
        print(f"root {r}: {search.states} states, {time.perf_counter() - t:.2f} s", flush=True)
    return np.array(rows, dtype=np.int64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--tie-rule", choices=TIE_RULES, default=DEFAULT_TIE_RULE)
    ap.add_argument("--out", default=None, help="reference file (default: the tie rule's, REFERENCE)")
    args = ap.parse_args()
    args.out = args.out or str(REFERENCE[args.tie_rule])
    t = time.perf_counter()
    got = compute(args.tie_rule)
    if args.tie_rule != "actions":  # U and mass do not depend on the tie rule
        other = np.load(REFERENCE["actions"])["rows"]
        assert got.shape == other.shape and (got[:, [0, 1, 3]] == other[:, [0, 1, 3]]).all(), "U or mass changed"
        print(f"U and mass identical to the 'actions' reference on {len(got)} states; "
              f"N differs on {int((got[:, 2] != other[:, 2]).sum())}, the best action on {int((got[:, 4] != other[:, 4]).sum())}")
    if args.record:
        np.savez(args.out, rows=got)
        print(f"recorded {len(got)} states to {args.out}")
    else:
        ref = np.load(args.out)["rows"]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        bad = np.flatnonzero((got != ref).any(axis=1))
        if len(bad):
            for i in bad[:20]:
                print("MISMATCH root", ref[i, 0], "ref (U,N,mass,best)", ref[i, 1:].tolist(), "got", got[i, 1:].tolist())
            raise SystemExit(f"{len(bad)} of {len(ref)} states differ")
        print(f"OK: {len(ref)} states identical (U, N, mass, best)")
    print(f"total {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
