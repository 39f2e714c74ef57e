"""The ideal observer and the search oracle (issue 15): exact against brute force on small cases.

The brute force below shares nothing with :mod:`alchemy_mbrl.ideal_observer` but the prior: it
moves latent stones with the environment's move table per chemistry, keeps every stone and potion
slot (no merging of identical items, every action searched, "no change" ones included) and
averages over an explicit list of chemistries with their prior weights.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from alchemy_mbrl.bayes.posterior import CHEM_GRAPH, CHEM_POTION_MAP, CHEM_STONE_MAP, GRAPH_WEIGHT, latent_potion_of_colour
from alchemy_mbrl.env.chemistry import MOVE_TABLE, NUM_CHEMISTRIES, Chemistry
from alchemy_mbrl.ideal_observer import (
    ACTION_CODES,
    TIE_RULES,
    USED_STONE,
    InsertionOrder,
    VALUE_OF_FEATURE,
    TrialSearch,
    action_of_code,
    chemistry_trial_value,
    observed_items,
    potion_stone_slot,
    trial_start_state,
)
from alchemy_mbrl.bayes.posterior import pack_chemistry_sets

R_OF_Q = latent_potion_of_colour()
POP = np.array([bin(v).count("1") for v in range(8)])


def _outcome(chem: int, pv: int, q: int) -> int:
    """Perceived vertex after putting a stone seen at pv into colour q, under chemistry ``chem``."""
    i, m, g = CHEM_STONE_MAP[chem], CHEM_POTION_MAP[chem], CHEM_GRAPH[chem]
    v = pv ^ 7 ^ i
    return int(MOVE_TABLE[g, R_OF_Q[m, q], v]) ^ 7 ^ i


def brute_force_value(chems: list[int], stones: list[int], colours: list[int]) -> float:
    """Expected trial reward of the exhaustive expectimax over every slot action (stones: perceived vertices)."""
    weight = {c: int(GRAPH_WEIGHT[CHEM_GRAPH[c]]) for c in chems}
    i0 = CHEM_STONE_MAP[chems[0]]
    assert all(CHEM_STONE_MAP[c] == i0 for c in chems), "stone values are read with one stone map"

    @functools.lru_cache(maxsize=None)
    def v(st: tuple, pots: tuple, cs: frozenset) -> float:
        best = sum(int(VALUE_OF_FEATURE[POP[pv ^ 7 ^ i0]]) for pv in st if pv >= 0 and POP[pv ^ 7 ^ i0] >= 2)
        total = sum(weight[c] for c in cs)
        for s, pv in enumerate(st):
            if pv < 0:
                continue
            for p, q in enumerate(pots):
                if q < 0:
                    continue
                groups: dict[int, list[int]] = {}
                for c in cs:
                    groups.setdefault(_outcome(c, pv, q), []).append(c)
                val = 0.0
                for new_pv, members in groups.items():
                    st2 = st[:s] + (new_pv,) + st[s + 1 :]
                    pots2 = pots[:p] + (-1,) + pots[p + 1 :]
                    w = sum(weight[c] for c in members)
                    val += w / total * v(st2, pots2, frozenset(members))
                best = max(best, val)
        return best

    return v(tuple(stones), tuple(colours), frozenset(chems))


def _search_value(chems: list[int], stones: list[int], colours: list[int]) -> float:
    member = np.zeros(NUM_CHEMISTRIES, dtype=bool)
    member[chems] = True
    search = TrialSearch(pack_chemistry_sets(member))
    i0 = CHEM_STONE_MAP[chems[0]]
    codes = np.array([4 * pv + POP[pv ^ 7 ^ i0] for pv in stones] + [USED_STONE] * (3 - len(stones)))
    u, _, mass = search.value(search.root, codes, np.bincount(colours, minlength=6))
    assert mass == sum(int(GRAPH_WEIGHT[CHEM_GRAPH[c]]) for c in chems)
    return u / mass


@pytest.mark.parametrize("case", range(12))
def test_expectimax_equals_brute_force_on_small_posteriors(case: int) -> None:
    rng = np.random.default_rng(case)
    i0 = int(rng.integers(8))
    pool = np.flatnonzero(CHEM_STONE_MAP == i0)
    # posteriors of a few chemistries: sometimes one potion map (graph uncertainty only), sometimes many
    if case % 3 == 0:
        pool = pool[CHEM_POTION_MAP[pool] == rng.integers(48)]
    chems = sorted(int(c) for c in rng.choice(pool, size=int(rng.integers(1, 13)), replace=False))
    stones = [int(x) for x in rng.integers(8, size=int(rng.integers(1, 4)))]
    colours = [int(x) for x in rng.integers(6, size=int(rng.integers(1, 5)))]
    assert _search_value(chems, stones, colours) == pytest.approx(brute_force_value(chems, stones, colours), abs=1e-12)


def brute_force_best_actions(chems: list[int], stones: list[int], colours: list[int],
                             tie_rule: str = "deepmind") -> list[int]:
    """Every best action by brute force, in exact integers, in the documented order of preference.

    (U, N) of a state: the prior-weighted total reward and number of remaining potion uses (tie rule
    ``deepmind``) or remaining actions, each cauldroned stone one (``actions``), the best (largest U,
    then smallest N) over ending the trial and every slot action. Returns the root's actions of the
    best (U, N): -1 (end of trial) first, then ``stone code * 6 + colour`` ascending; with the
    default order of :meth:`TrialSearch.best` the documented choice is the first.
    """
    per_stone = {"deepmind": 0, "actions": 1}[tie_rule]
    weight = {c: int(GRAPH_WEIGHT[CHEM_GRAPH[c]]) for c in chems}
    i0 = CHEM_STONE_MAP[chems[0]]

    def end(st: tuple, w: int) -> tuple[int, int]:
        pos = [pv for pv in st if pv >= 0 and POP[pv ^ 7 ^ i0] >= 2]
        return w * sum(int(VALUE_OF_FEATURE[POP[pv ^ 7 ^ i0]]) for pv in pos), w * per_stone * len(pos)

    def action(st: tuple, pots: tuple, cs: frozenset, s: int, p: int) -> tuple[int, int]:
        groups: dict[int, list[int]] = {}
        for c in cs:
            groups.setdefault(_outcome(c, st[s], pots[p]), []).append(c)
        u, n = 0, sum(weight[c] for c in cs)  # this action is one step
        for new_pv, members in groups.items():
            cu, cn = v(st[:s] + (new_pv,) + st[s + 1 :], pots[:p] + (-1,) + pots[p + 1 :], frozenset(members))
            u, n = u + cu, n + cn
        return u, n

    @functools.lru_cache(maxsize=None)
    def v(st: tuple, pots: tuple, cs: frozenset) -> tuple[int, int]:
        best = end(st, sum(weight[c] for c in cs))
        for s, pv in enumerate(st):
            for p, q in enumerate(pots):
                if pv >= 0 and q >= 0:
                    u, n = action(st, pots, cs, s, p)
                    if u > best[0] or (u == best[0] and n < best[1]):
                        best = (u, n)
        return best

    st, pots, cs = tuple(stones), tuple(colours), frozenset(chems)
    values = {-1: end(st, sum(weight.values()))}
    for s, pv in enumerate(st):
        for p, q in enumerate(pots):
            values[(4 * pv + int(POP[pv ^ 7 ^ i0])) * 6 + q] = action(st, pots, cs, s, p)
    best = max(values.values(), key=lambda un: (un[0], -un[1]))
    return sorted(a for a, un in values.items() if un == best)


TIE_CASES = range(48)


def _tie_case(case: int) -> tuple[list[int], list[int], list[int], int]:
    rng = np.random.default_rng(300 + case)
    i0 = int(rng.integers(8))
    pool = np.flatnonzero(CHEM_STONE_MAP == i0)
    if case % 2 == 0:  # one potion map, 3 stones: the order of two stones' potions often does not matter (ties)
        pool = pool[CHEM_POTION_MAP[pool] == rng.integers(48)]
        chems = sorted(int(c) for c in rng.choice(pool, size=int(rng.integers(1, 3)), replace=False))
        stones = [int(x) for x in rng.integers(8, size=3)]
        colours = [int(x) for x in rng.integers(6, size=4)]
        return chems, stones, colours, i0
    chems = sorted(int(c) for c in rng.choice(pool, size=int(rng.integers(1, 10)), replace=False))
    stones = [int(x) for x in rng.integers(8, size=int(rng.integers(1, 4)))]
    colours = [int(x) for x in rng.integers(6, size=int(rng.integers(1, 5)))]
    return chems, stones, colours, i0


@pytest.mark.parametrize("tie_rule", TIE_RULES)
@pytest.mark.parametrize("case", TIE_CASES)
def test_best_action_and_its_tie_break_equal_brute_force(case: int, tie_rule: str) -> None:
    """The searched best action (best bound first, pruned) is the brute force's, ties included; with
    an order of preference, the first of the brute force's best actions in that order."""
    chems, stones, colours, i0 = _tie_case(case)
    member = np.zeros(NUM_CHEMISTRIES, dtype=bool)
    member[chems] = True
    search = TrialSearch(pack_chemistry_sets(member), tie_rule=tie_rule)
    codes = np.array([4 * pv + POP[pv ^ 7 ^ i0] for pv in stones] + [USED_STONE] * (3 - len(stones)))
    best = brute_force_best_actions(chems, stones, colours, tie_rule)
    counts = np.bincount(colours, minlength=6)
    assert search.best(search.root, codes, counts) == best[0]
    reverse = np.arange(ACTION_CODES)[::-1].copy()  # the largest code first
    expected = best[0] if best[0] == -1 else max(best)
    assert search.best(search.root, codes, counts, reverse) == expected


def test_the_tie_cases_have_ties() -> None:
    """The cases above include roots with several best actions, so the tie-break is exercised."""
    ties = [len(brute_force_best_actions(*_tie_case(case)[:3])) for case in TIE_CASES]
    assert sum(n > 1 for n in ties) >= 4, ties


def test_insertion_order_follows_deepminds_counters() -> None:
    """Stones in slot order (one key per distinct stone), a changed stone moved to the end only when
    none of its old code is left; colours in their first slot's order; absent actions last."""
    order = InsertionOrder(np.array([9, 5, 9]), np.array([3, 1, 3, -1, 0] + [-1] * 7))
    assert list(order.stones) == [9, 5] and order.colours == [3, 1, 0]
    ranks = order.ranks()
    assert ranks[9 * 6 + 3] == 0 and ranks[9 * 6 + 0] == 2 and ranks[5 * 6 + 3] == 6 and ranks[4 * 6 + 3] == ACTION_CODES
    order.potion_used(9, 12)  # one 9 left: its key stays first
    assert list(order.stones) == [9, 5, 12]
    order.potion_used(9, 5)  # no 9 left: removed; 5 exists: keeps its place
    assert list(order.stones) == [5, 12] and order.stones == {5: 2, 12: 1}
    order.potion_used(5, 5)  # no change: nothing moves
    assert order.stones == {5: 2, 12: 1}
    assert potion_stone_slot(0) == -1 and potion_stone_slot(1 + 13) == -1 and potion_stone_slot(2 + 13 * 2 + 11) == 2


@pytest.mark.parametrize("seed", range(6))
def test_search_oracle_is_the_best_action_sequence(seed: int) -> None:
    """With one chemistry the search's trial value is the best over all action sequences."""
    rng = np.random.default_rng(100 + seed)
    chem = int(rng.integers(NUM_CHEMISTRIES))
    stones_latent = rng.integers(8, size=3)
    potions = rng.integers(6, size=5)
    c = Chemistry.from_index(np.array([chem]))
    codes, counts = trial_start_state(c, stones_latent, potions)
    i0 = CHEM_STONE_MAP[chem]
    pvs = [int(x) ^ 7 ^ i0 for x in stones_latent]
    colours = [int(q) for q in c.colour_of_latent[0][potions]]
    assert (codes >> 2).tolist() == pvs
    expected = brute_force_value([chem], pvs, colours)
    assert chemistry_trial_value(c, stones_latent, potions) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ideal_observer_never_beats_the_search_oracle_on_average(seed: int) -> None:
    """Knowing the chemistry can only help: the IO's value <= the posterior average of the oracle's."""
    rng = np.random.default_rng(200 + seed)
    i0 = int(rng.integers(8))
    pool = np.flatnonzero(CHEM_STONE_MAP == i0)
    chems = sorted(int(c) for c in rng.choice(pool, size=40, replace=False))
    stones = [int(x) for x in rng.integers(8, size=3)]
    colours = [int(x) for x in rng.integers(6, size=6)]
    io = _search_value(chems, stones, colours)
    w = np.array([GRAPH_WEIGHT[CHEM_GRAPH[c]] for c in chems], dtype=float)
    oracle = np.array([_search_value([c], stones, colours) for c in chems])
    assert io <= float(w @ oracle / w.sum()) + 1e-12
    assert io >= max(0, sum(int(VALUE_OF_FEATURE[POP[pv ^ 7 ^ i0]]) for pv in stones if POP[pv ^ 7 ^ i0] >= 2)) - 1e-12


def test_observed_items_and_actions() -> None:
    obs = np.zeros(39, dtype=np.uint8)
    obs[0:5] = [1, 0, 1, 2, 0]  # stone 0 at pv 5, feature 2
    obs[5:10] = [2, 2, 2, 4, 1]  # used
    obs[10:15] = [0, 0, 0, 3, 0]  # pv 0, feature 3 (+15)
    obs[15::2] = [3, 0, 3, 1, 2, 2, 5, 4, 0, 1, 3, 2]
    obs[16::2] = 0
    obs[16] = 1  # potion 0 used
    stones, colours, counts = observed_items(obs)
    assert stones.tolist() == [22, USED_STONE, 3]
    assert colours[0] == -1 and counts.tolist() == [2, 2, 3, 2, 1, 1]
    assert action_of_code(22 * 6 + 3, stones, colours) == 2 + 0 + 2  # stone 0, first present yellow = slot 2
    assert action_of_code(3 * 6 + 0, stones, colours) == 2 + 26 + 1
    assert action_of_code(-1, stones, colours) == 1  # end of trial: stone 0 (+1) first


def _cli(*args: str) -> None:
    from alchemy_mbrl.cli import main

    assert main(list(args)) == 0


def test_search_oracle_cli_chunks_and_episodes_file(tmp_path) -> None:
    """The search oracle through `evaluate`: chunks merge into the unchunked run, and an episodes file
    written from the seed gives the same returns (it plays exactly those episodes)."""
    import pandas as pd

    from alchemy_mbrl.evaluate import read_returns

    whole, a, b, merged, ep_file, from_file = (tmp_path / n for n in ("w.csv", "a.csv", "b.csv", "m.csv", "e.npz", "f.csv"))
    _cli("evaluate", "--policy", "search-oracle", "--episodes", "12", "--seed", "5", "--out", str(whole), "--no-progress")
    _cli("evaluate", "--policy", "search-oracle", "--episodes", "12", "--seed", "5", "--chunk", "0/2", "--out", str(a),
         "--no-progress")
    _cli("evaluate", "--policy", "search-oracle", "--episodes", "12", "--seed", "5", "--chunk", "1/2", "--out", str(b),
         "--no-progress", "--batch", "4")
    _cli("merge-returns", str(a), str(b), "--out", str(merged))
    _cli("episodes", "--episodes", "12", "--seed", "5", "--out", str(ep_file))
    _cli("evaluate", "--policy", "search-oracle", "--episodes-file", str(ep_file), "--seed", "5", "--out", str(from_file),
         "--no-progress")
    w = read_returns(whole)
    assert (w["policy"] == "search-oracle").all() and len(w) == 12
    pd.testing.assert_series_equal(w["return"], read_returns(merged)["return"])
    pd.testing.assert_series_equal(w["return"], read_returns(from_file)["return"])
    # the search oracle is the ceiling of every agent that does not know the chemistry: never below
    # the random heuristic on average over these paired episodes
    rh = tmp_path / "rh.csv"
    _cli("evaluate", "--policy", "random-heuristic", "--episodes", "12", "--seed", "5", "--out", str(rh), "--no-progress")
    assert w["return"].mean() > read_returns(rh)["return"].mean()


def test_ideal_observer_plays_a_whole_episode(tmp_path) -> None:
    """One full episode of the exact ideal observer through `evaluate` (seed 0, episode 0: ~10 s), between
    ending every trial at once and the search oracle on the same episode."""
    from alchemy_mbrl.evaluate import read_returns

    io, so = tmp_path / "io.csv", tmp_path / "so.csv"
    _cli("evaluate", "--policy", "ideal-observer", "--episodes", "1", "--seed", "0", "--out", str(io), "--no-progress")
    _cli("evaluate", "--policy", "search-oracle", "--episodes", "1", "--seed", "0", "--out", str(so), "--no-progress")
    r_io, r_so = read_returns(io)["return"][0], read_returns(so)["return"][0]
    assert 200 <= r_io <= 450 and r_so <= 450


def test_importing_evaluate_builds_and_compiles_nothing_of_the_search() -> None:
    """``import alchemy_mbrl.evaluate`` (and the CLI) load only the agents' names: no table, no kernel."""
    import subprocess
    import sys

    code = (
        "import sys, alchemy_mbrl.evaluate, alchemy_mbrl.cli; alchemy_mbrl.cli.build_parser(); "
        "import alchemy_mbrl.ideal_observer as io; "
        "print(sorted(m for m in sys.modules if m.startswith('alchemy_mbrl.ideal_observer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['alchemy_mbrl.ideal_observer', 'alchemy_mbrl.ideal_observer.names']"


def test_the_policy_registry_is_the_clis() -> None:
    """``evaluate --policy`` offers exactly :data:`alchemy_mbrl.evaluate.POLICIES` (one registry)."""
    from alchemy_mbrl.cli import build_parser
    from alchemy_mbrl.evaluate import POLICIES

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    policy = next(a for a in sub.choices["evaluate"]._actions if a.dest == "policy")
    assert tuple(policy.choices) == POLICIES
