"""A catalogue of bad inputs (issue 12): every command, run in-process through ``alchemy_mbrl.cli.main``.

Each case must end with exit code 2 (bad input) or 1 (a check that ran and failed), print a
one-line ``error:`` message naming the culprit (the file, the argument or the config key), show no
traceback, and leave no file behind. Set ``BAD_INPUT_REPORT=path.jsonl`` to record how each case
ended instead of failing (used to count the cases before and after the fixes).

Besides the catalogue: a full disk (a 64 KiB tmpfs when this runs as root, otherwise a simulated
ENOSPC), the config checks of the workflow, and the Python API's validation.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from alchemy_mbrl.cli import main

REPORT = os.environ.get("BAD_INPUT_REPORT")


# --- the workspace: good files and their bad variants ------------------------------------------------

def _copy_dataset(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        shutil.copy(p, dst / p.name)
    return dst / "manifest.json"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from alchemy_mbrl.data.shards import write_manifest, write_shard

    root = tmp_path_factory.mktemp("bad_inputs")
    w: dict[str, Path] = {"root": root}
    data = root / "data"
    shards = [write_shard(data / f"shard-{i}.h5", shard=i, num_shards=2, episodes=6, seed=5, progress=False)
              for i in range(2)]
    w["manifest"] = data / "manifest.json"
    write_manifest(w["manifest"], shards, validation=1)
    w["shard"] = shards[0]

    # one reward changed in place: still valid HDF5 and in range, but no longer the manifest's file
    w["tampered"] = _copy_dataset(data, root / "tampered")
    with h5py.File(w["tampered"].parent / "shard-0.h5", "r+") as f:
        r = f["rewards"][0]
        r[5] = -3 if r[5] != -3 else -1
        f["rewards"][0] = r
    with h5py.File(w["tampered"].parent / "shard-1.h5", "r+") as f:
        r = f["rewards"][0]
        r[5] = -3 if r[5] != -3 else -1
        f["rewards"][0] = r
    # out-of-range codes with a manifest rebuilt over them (checksums agree)
    bad = root / "badcode"
    bad.mkdir()
    for p in shards:
        shutil.copy(p, bad / p.name)
    for name in ("shard-0.h5", "shard-1.h5"):
        with h5py.File(bad / name, "r+") as f:
            o = f["obs_codes"][3]
            o[17, 20] = 9
            f["obs_codes"][3] = o
    w["badcode_manifest"] = bad / "manifest.json"
    write_manifest(w["badcode_manifest"], [bad / "shard-0.h5", bad / "shard-1.h5"], validation=1)
    w["badcode_shard"] = bad / "shard-0.h5"
    w["badreward_shard"] = root / "badreward.h5"
    shutil.copy(shards[0], w["badreward_shard"])
    with h5py.File(w["badreward_shard"], "r+") as f:
        r = f["rewards"][2]
        r[7] = 7
        f["rewards"][2] = r
    w["truncated"] = root / "truncated.h5"
    w["truncated"].write_bytes(shards[0].read_bytes()[:3000])
    w["text"] = root / "notes.txt"
    w["text"].write_text("not what you think\n")
    w["notjson_manifest"] = root / "m.json"
    w["notjson_manifest"].write_text('{"shards": 3}')

    # models: a real tiny one, a text file named model.pt, a torch file of something else
    import torch

    from alchemy_mbrl.model.checkpoint import save_model
    from alchemy_mbrl.model.config import resolve_config
    from alchemy_mbrl.model.world_model import WorldModel

    cfg, _ = resolve_config("original", dict(d_model=8, n_heads=2, n_layers=1, d_ff=8, mlp_hidden=8, obs_context=8, gru_hidden=4))
    torch.manual_seed(0)
    (root / "model").mkdir()
    save_model(root / "model" / "model.pt", cfg, WorldModel(cfg), 1, 1.0)
    w["model"] = root / "model"
    (root / "textmodel").mkdir()
    (root / "textmodel" / "model.pt").write_text("hello")
    w["textmodel"] = root / "textmodel"
    (root / "dictmodel").mkdir()
    torch.save({"step": 3}, root / "dictmodel" / "model.pt")
    w["dictmodel"] = root / "dictmodel"

    # train --config files
    w["cfg_unknown"] = root / "unknown.yaml"
    w["cfg_unknown"].write_text("steps: 2\nd_modle: 16\n")
    w["cfg_heads"] = root / "heads.yaml"
    w["cfg_heads"].write_text("steps: 2\nd_model: 15\nn_heads: 4\n")
    w["cfg_small"] = root / "small.yaml"  # what a bad dataset would be trained with, were it accepted
    w["cfg_small"].write_text("steps: 1\nbatch_size: 2\nd_model: 8\nn_heads: 2\nn_layers: 1\nd_ff: 8\n"
                              "mlp_hidden: 8\nobs_context: 8\ngru_hidden: 4\nval_episodes: 2\nthreads: 1\n")
    w["cfg_list"] = root / "list.yaml"
    w["cfg_list"].write_text("- 1\n- 2\n")

    # planner params
    for name, obj in {"p_string": {"c1": "big"}, "p_null": {"temperature": None}, "p_unknown": {"c3": 1.0},
                      "p_bigk": {"k": 1000000}, "p_negc1": {"c1": -1.0}, "p_list": [1, 2]}.items():
        w[name] = root / f"{name}.json"
        w[name].write_text(json.dumps(obj))

    # returns CSVs: chunk 0 and 1 of a 4-episode uniform evaluation, and variants
    import pandas as pd

    from alchemy_mbrl.evaluate import RETURN_COLUMNS, evaluate_policy, make_policy, write_returns

    pol = make_policy("uniform")
    for i in range(2):
        write_returns(evaluate_policy(pol, 4, seed=0, chunk=(i, 2), progress=False), root / f"r{i}.csv")
    w["r0"], w["r1"] = root / "r0.csv", root / "r1.csv"
    df1 = pd.read_csv(w["r1"], keep_default_na=False)
    for name, col, value in (("r1_seed", "seed", 1), ("r1_policy", "policy", "random-heuristic"),
                             ("r1_sim", "simulator", "oracle"), ("r1_budget", "budget", 7)):
        d = df1.copy()
        d[col] = value
        w[name] = root / f"{name}.csv"
        d.to_csv(w[name], index=False)
    w["r_header"] = root / "header.csv"
    w["r_header"].write_text(",".join(RETURN_COLUMNS) + "\n")
    w["r_overlap"] = root / "overlap.csv"
    shutil.copy(w["r0"], w["r_overlap"])

    # summaries and model evaluations
    def summary(name: str, **kw: object) -> None:
        w[name] = root / f"{name}.json"
        w[name].write_text(json.dumps({"mean": 10.0, "sem": 1.0, "n": 4, "std": 2.0, **kw}))

    summary("s_oracle2", policy="planner", simulator="oracle", budget=2)
    summary("s_uniform", policy="uniform", simulator="", budget="")
    summary("s_empty", policy="planner", simulator="oracle", budget=2, n=0)
    for name, model in (("e_original", "original"), ("e_gru", "gru_backbone")):
        w[name] = root / f"{name}.json"
        w[name].write_text(json.dumps({"model": model, "entropy_nats_per_step": 2.0, "entropy_sem": 0.1,
                                       "chemistry_nats_per_step": 0.5, "trial_start_nats_per_step": 1.5,
                                       "n_episodes": 6}))

    # traces (SPEC §11): shapes right, content irrelevant (the checks come first)
    n = 1
    tr = {"potion_perm": np.tile(np.arange(3, dtype=np.int8), (n, 1)), "potion_sign": np.ones((n, 3), np.int8),
          "stone_sign": np.ones((n, 3), np.int8), "graph_edges": np.ones((n, 12), bool),
          "stones": np.ones((n, 10, 3, 3), np.int8), "potions": np.zeros((n, 10, 12), np.int8),
          "actions": np.zeros((n, 200), np.int16), "obs": np.zeros((n, 201, 39), np.float32),
          "rewards": np.zeros((n, 200), np.float32), "discount": np.ones((n, 200), np.float32),
          "step_type": np.ones((n, 201), np.int8), "format_version": np.int32(1)}
    np.savez(root / "tr_version.npz", **{**tr, "format_version": np.int32(2)})
    np.savez(root / "tr_noversion.npz", **{k: v for k, v in tr.items() if k != "format_version"})
    np.savez(root / "tr_float.npz", **{**tr, "actions": np.full((n, 200), 0.5, np.float32)})
    np.savez(root / "tr_range.npz", **{**tr, "actions": np.full((n, 200), 41, np.int16)})
    np.savez(root / "tr_missing.npz", obs=tr["obs"])
    for name in ("tr_version", "tr_noversion", "tr_float", "tr_range", "tr_missing"):
        w[name] = root / f"{name}.npz"

    # episodes files (--episodes-file): 2 good episodes and one defect each (names say nothing of the defect)
    from alchemy_mbrl.env.episodes import episode_arrays
    from alchemy_mbrl.evaluate import episode_setup

    chem, items, _ = episode_setup(0, np.arange(2))
    ep = episode_arrays(chem, items)
    w["ep_good"] = root / "ep_good.npz"
    np.savez_compressed(w["ep_good"], **ep)

    def variant(name: str, **arrays: object) -> None:
        w[name] = root / f"{name}.npz"
        np.savez_compressed(w[name], **{k: v for k, v in {**ep, **arrays}.items() if v is not None})

    def edit(key: str, index: tuple[int, ...], value: int) -> np.ndarray:
        a = ep[key].copy()
        a[index] = value
        return a

    variant("ep_a", stones=None)                                            # missing array
    variant("ep_b", potions=ep["potions"][:, :, :11])                       # wrong shape
    variant("ep_c", potions=ep["potions"].astype(np.float32))               # wrong dtype
    variant("ep_d", potion_perm=edit("potion_perm", (1, 1), ep["potion_perm"][1, 0]))  # not a permutation
    variant("ep_e", potion_sign=edit("potion_sign", (1, 2), 0))             # sign 0
    variant("ep_f", stone_sign=edit("stone_sign", (0, 0), 2))               # sign 2
    variant("ep_g", graph_edges=np.zeros((2, 12), bool))                    # not a valid graph
    variant("ep_h", stones=edit("stones", (1, 4, 2, 0), 0))                 # stone coordinate 0
    variant("ep_i", potions=edit("potions", (0, 9, 11), 6))                 # potion index 6
    variant("ep_j", stones=np.concatenate([ep["stones"], ep["stones"][:1]]))  # 3 rows against 2
    variant("ep_k", graph_id=(ep["graph_id"] + 1) % 109)                    # disagrees with graph_edges
    variant("ep_l", format_version=np.int32(2))
    variant("ep_m", **{k: ep[k][:0] for k in ("potion_perm", "potion_sign", "stone_sign", "graph_edges", "stones",
                                              "potions", "graph_id")})    # no episode
    np.save(root / "ep_n.npy", ep["potions"])                               # a single .npy array
    w["ep_n"] = root / "ep_n.npy"
    w["ep_o"] = root / "ep_o.npz"
    w["ep_o"].write_bytes(w["ep_good"].read_bytes()[:200])                  # truncated zip
    return w


# --- the catalogue ----------------------------------------------------------------------------------
# (id, argv with {name} = a workspace path and {out} = a fresh empty directory, culprit, exit codes).
# ``hangs_before`` marks inputs that ran for minutes before the fix (skipped when counting old code).

EVAL = ["evaluate", "--episodes", "2", "--no-progress"]
PLANNER = [*EVAL, "--simulator", "oracle"]
CASES: list[tuple[str, list[str], str]] = [
    # env replay
    ("replay-missing", ["env", "replay", "--traces", "{root}/nope.npz"], "nope.npz"),
    ("replay-text", ["env", "replay", "--traces", "{text}"], "notes.txt"),
    ("replay-missing-arrays", ["env", "replay", "--traces", "{tr_missing}"], "tr_missing.npz"),
    ("replay-format-version", ["env", "replay", "--traces", "{tr_version}"], "format_version"),
    ("replay-no-format-version", ["env", "replay", "--traces", "{tr_noversion}"], "format_version"),
    ("replay-float-actions", ["env", "replay", "--traces", "{tr_float}"], "actions"),
    ("replay-action-range", ["env", "replay", "--traces", "{tr_range}"], "actions"),
    # generate
    ("generate-episodes-0", ["generate", "--shard", "0", "--num-shards", "2", "--episodes", "0", "--seed", "1",
                             "--out", "{out}/s.h5", "--no-progress"], "--episodes"),
    ("generate-shard-range", ["generate", "--shard", "2", "--num-shards", "2", "--episodes", "2", "--seed", "1",
                              "--out", "{out}/s.h5", "--no-progress"], "--shard"),
    ("generate-num-shards-0", ["generate", "--shard", "0", "--num-shards", "0", "--episodes", "2", "--seed", "1",
                               "--out", "{out}/s.h5", "--no-progress"], "--num-shards"),
    ("generate-seed-negative", ["generate", "--shard", "0", "--num-shards", "2", "--episodes", "2", "--seed", "-3",
                                "--out", "{out}/s.h5", "--no-progress"], "--seed"),
    ("generate-seed-huge", ["generate", "--shard", "0", "--num-shards", "2", "--episodes", "2", "--seed",
                            "99999999999999999999999", "--out", "{out}/s.h5", "--no-progress"], "--seed"),
    ("generate-out-dir", ["generate", "--shard", "0", "--num-shards", "2", "--episodes", "2", "--seed", "1",
                          "--out", "{out}", "--no-progress"], "directory"),
    # data manifest / inspect
    ("manifest-missing-shard", ["data", "manifest", "{root}/nope.h5", "--validation", "0", "--out", "{out}/m.json"],
     "nope.h5"),
    ("manifest-text-shard", ["data", "manifest", "{text}", "--validation", "0", "--out", "{out}/m.json"], "notes.txt"),
    ("manifest-validation-all", ["data", "manifest", "{shard}", "--validation", "1", "--out", "{out}/m.json"],
     "--validation"),
    ("manifest-duplicate", ["data", "manifest", "{shard}", "{shard}", "--validation", "1", "--out", "{out}/m.json"],
     "same"),
    ("inspect-missing", ["data", "inspect", "{root}/nope.h5"], "nope.h5"),
    ("inspect-truncated", ["data", "inspect", "{truncated}"], "truncated.h5"),
    ("inspect-tampered", ["data", "inspect", "{tampered}"], "shard-0.h5"),
    ("inspect-bad-obs-code", ["data", "inspect", "{badcode_shard}"], "obs_codes"),
    ("inspect-bad-obs-code-manifest", ["data", "inspect", "{badcode_manifest}"], "[3, 17, 20]"),
    ("inspect-bad-reward", ["data", "inspect", "{badreward_shard}"], "rewards"),
    ("inspect-bad-manifest", ["data", "inspect", "{notjson_manifest}"], "m.json"),
    # train
    ("train-missing-data", ["train", "--data", "{root}/nope.json", "--out", "{out}/m", "--no-progress"], "nope.json"),
    ("train-data-is-shard", ["train", "--data", "{shard}", "--out", "{out}/m", "--no-progress"], "shard-0.h5"),
    ("train-tampered-checksum", ["train", "--data", "{tampered}", "--config", "{cfg_small}", "--out", "{out}/m", "--device", "cpu",
                                 "--no-progress"], "SHA-256"),
    ("train-bad-code", ["train", "--data", "{badcode_manifest}", "--config", "{cfg_small}", "--out", "{out}/m", "--device", "cpu",
                        "--no-progress"], "obs_codes"),
    ("train-arch", ["train", "--data", "{manifest}", "--arch", "transformer", "--out", "{out}/m"], "transformer"),
    ("train-config-missing", ["train", "--data", "{manifest}", "--config", "{root}/nope.yaml", "--out", "{out}/m"],
     "nope.yaml"),
    ("train-config-unknown-key", ["train", "--data", "{manifest}", "--config", "{cfg_unknown}", "--out", "{out}/m"],
     "d_modle"),
    ("train-config-heads", ["train", "--data", "{manifest}", "--config", "{cfg_heads}", "--out", "{out}/m"], "n_heads"),
    ("train-config-list", ["train", "--data", "{manifest}", "--config", "{cfg_list}", "--out", "{out}/m"], "list.yaml"),
    ("train-device", ["train", "--data", "{manifest}", "--device", "tpu9", "--out", "{out}/m"], "tpu9"),
    ("train-micro-batch-0", ["train", "--data", "{manifest}", "--micro-batch", "0", "--out", "{out}/m"],
     "micro_batch"),
    # model-eval
    ("model-eval-no-model", ["model-eval", "--model", "{root}/nope", "--data", "{manifest}", "--out", "{out}/e.json"],
     "nope"),
    ("model-eval-text-model", ["model-eval", "--model", "{textmodel}", "--data", "{manifest}", "--out",
                               "{out}/e.json"], "model.pt"),
    ("model-eval-dict-model", ["model-eval", "--model", "{dictmodel}", "--data", "{manifest}", "--out",
                               "{out}/e.json"], "model.pt"),
    ("model-eval-device", ["model-eval", "--model", "{model}", "--data", "{manifest}", "--device", "tpu9", "--out",
                           "{out}/e.json"], "tpu9"),
    ("model-eval-batch-0", ["model-eval", "--model", "{model}", "--data", "{manifest}", "--batch-episodes", "0",
                            "--out", "{out}/e.json"], "--batch-episodes"),
    ("model-eval-max-1", ["model-eval", "--model", "{model}", "--data", "{manifest}", "--max-episodes", "1",
                          "--out", "{out}/e.json"], "--max-episodes"),
    ("model-eval-tampered", ["model-eval", "--model", "{model}", "--data", "{tampered}", "--device", "cpu",
                             "--out", "{out}/e.json"], "SHA-256"),
    ("model-eval-bad-code", ["model-eval", "--model", "{model}", "--data", "{badcode_manifest}", "--device", "cpu",
                             "--out", "{out}/e.json"], "obs_codes"),
    ("model-eval-data-is-shard", ["model-eval", "--model", "{model}", "--data", "{shard}", "--device", "cpu",
                                  "--out", "{out}/e.json"], "shard-0.h5"),
    # bayes-entropy
    ("bayes-tampered", ["bayes-entropy", "--data", "{tampered}", "--out", "{out}/b.json", "--no-progress"], "SHA-256"),
    ("bayes-bad-code", ["bayes-entropy", "--data", "{badcode_manifest}", "--out", "{out}/b.json", "--no-progress"],
     "obs_codes"),
    ("bayes-data-is-shard", ["bayes-entropy", "--data", "{shard}", "--out", "{out}/b.json", "--no-progress"],
     "shard-0.h5"),
    ("bayes-batch-0", ["bayes-entropy", "--data", "{manifest}", "--batch-episodes", "0", "--out", "{out}/b.json"],
     "--batch-episodes"),
    ("bayes-max-0", ["bayes-entropy", "--data", "{manifest}", "--max-episodes", "0", "--out", "{out}/b.json"],
     "--max-episodes"),
    # evaluate / baseline
    ("evaluate-budget-0", [*PLANNER, "--budget", "0", "--out", "{out}/r.csv"], "--budget"),
    ("evaluate-budget-1e9", [*PLANNER, "--budget", "1000000000", "--out", "{out}/r.csv"], "--budget"),
    ("evaluate-budget-1e6", ["evaluate", "--episodes", "64", "--no-progress", "--simulator", "oracle", "--budget",
                             "1000000", "--out", "{out}/r.csv"], "--batch"),
    ("evaluate-k-1e6", [*PLANNER, "--budget", "2", "--params", "{p_bigk}", "--out", "{out}/r.csv"], "GiB"),
    ("evaluate-params-string", [*PLANNER, "--budget", "2", "--params", "{p_string}", "--out", "{out}/r.csv"], "c1"),
    ("evaluate-params-null", [*PLANNER, "--budget", "2", "--params", "{p_null}", "--out", "{out}/r.csv"],
     "temperature"),
    ("evaluate-params-unknown", [*PLANNER, "--budget", "2", "--params", "{p_unknown}", "--out", "{out}/r.csv"], "c3"),
    ("evaluate-params-negative-c1", [*PLANNER, "--budget", "2", "--params", "{p_negc1}", "--out", "{out}/r.csv"],
     "c1"),
    ("evaluate-params-list", [*PLANNER, "--budget", "2", "--params", "{p_list}", "--out", "{out}/r.csv"],
     "p_list.json"),
    ("evaluate-params-missing", [*PLANNER, "--budget", "2", "--params", "{root}/nope.json", "--out", "{out}/r.csv"],
     "nope.json"),
    ("evaluate-params-binary", [*PLANNER, "--budget", "2", "--params", "{shard}", "--out", "{out}/r.csv"],
     "shard-0.h5"),
    ("evaluate-no-simulator", [*EVAL, "--budget", "2", "--out", "{out}/r.csv"], "--simulator"),
    ("evaluate-learned-no-model", [*EVAL, "--simulator", "learned", "--budget", "2", "--out", "{out}/r.csv"],
     "--model"),
    ("evaluate-learned-text-model", [*EVAL, "--simulator", "learned", "--model", "{textmodel}", "--budget", "2",
                                     "--out", "{out}/r.csv"], "model.pt"),
    ("evaluate-learned-device", [*EVAL, "--simulator", "learned", "--model", "{model}", "--device", "tpu9",
                                 "--budget", "2", "--out", "{out}/r.csv"], "tpu9"),
    ("evaluate-chunk-range", [*PLANNER, "--budget", "2", "--chunk", "2/2", "--out", "{out}/r.csv"], "chunk"),
    ("evaluate-chunk-text", [*PLANNER, "--budget", "2", "--chunk", "x", "--out", "{out}/r.csv"], "chunk"),
    ("evaluate-batch-0", [*PLANNER, "--budget", "2", "--batch", "0", "--out", "{out}/r.csv"], "--batch"),
    ("evaluate-episodes-0", ["evaluate", "--policy", "uniform", "--episodes", "0", "--out", "{out}/r.csv"],
     "--episodes"),
    ("evaluate-seed-negative", ["evaluate", "--policy", "uniform", "--episodes", "2", "--seed", "-3", "--out",
                                "{out}/r.csv"], "--seed"),
    ("evaluate-baseline-budget", ["evaluate", "--policy", "uniform", "--episodes", "2", "--budget", "5", "--out",
                                  "{out}/r.csv"], "--budget"),
    ("evaluate-out-dir", ["evaluate", "--policy", "uniform", "--episodes", "2", "--out", "{out}"], "directory"),
    ("baseline-seed-huge", ["baseline", "--policy", "uniform", "--episodes", "2", "--seed", "99999999999999999999999",
                            "--out", "{out}/r.csv"], "--seed"),
    ("baseline-seed-negative", ["baseline", "--policy", "uniform", "--episodes", "2", "--seed", "-3", "--out",
                                "{out}/r.csv"], "--seed"),
    # evaluate / baseline --episodes-file, and the episodes command
    ("episodes-file-missing", ["evaluate", "--policy", "uniform", "--episodes-file", "{root}/nope.npz", "--out",
                               "{out}/r.csv"], "nope.npz"),
    ("episodes-file-text", ["baseline", "--policy", "uniform", "--episodes-file", "{text}", "--out", "{out}/r.csv"],
     "notes.txt"),
    ("episodes-file-npy", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_n}", "--out", "{out}/r.csv"],
     "not an .npz"),
    ("episodes-file-truncated", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_o}", "--out",
                                 "{out}/r.csv"], "ep_o.npz"),
    ("episodes-file-dir", ["baseline", "--policy", "uniform", "--episodes-file", "{root}", "--out", "{out}/r.csv"],
     "directory"),
    ("episodes-file-missing-array", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_a}", "--out",
                                     "{out}/r.csv"], "missing array(s) 'stones'"),
    ("episodes-file-shape", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_b}", "--out", "{out}/r.csv"],
     "'potions' has shape [2, 10, 11]"),
    ("episodes-file-dtype", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_c}", "--out", "{out}/r.csv"],
     "'potions' has dtype float32"),
    ("episodes-file-perm", [*PLANNER, "--budget", "2", "--episodes-file", "{ep_d}", "--out", "{out}/r.csv"],
     "potion_perm[1]"),
    ("episodes-file-potion-sign", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_e}", "--out",
                                   "{out}/r.csv"], "potion_sign[1, 2] = 0"),
    ("episodes-file-stone-sign", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_f}", "--out",
                                  "{out}/r.csv"], "stone_sign[0, 0] = 2"),
    ("episodes-file-graph", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_g}", "--out", "{out}/r.csv"],
     "graph_edges[0] = edge set 000000000000"),
    ("episodes-file-stones", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_h}", "--out", "{out}/r.csv"],
     "stones[1, 4, 2, 0] = 0"),
    ("episodes-file-potions", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_i}", "--out",
                               "{out}/r.csv"], "potions[0, 9, 11] = 6"),
    ("episodes-file-rows", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_j}", "--out", "{out}/r.csv"],
     "stones 3"),
    ("episodes-file-graph-id", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_k}", "--out",
                                "{out}/r.csv"], "graph_id[0]"),
    ("episodes-file-version", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_l}", "--out",
                               "{out}/r.csv"], "format_version"),
    ("episodes-file-empty", ["baseline", "--policy", "uniform", "--episodes-file", "{ep_m}", "--out", "{out}/r.csv"],
     "no episode"),
    ("episodes-file-too-few", ["evaluate", "--policy", "uniform", "--episodes", "3", "--episodes-file", "{ep_good}",
                               "--out", "{out}/r.csv"], "2 episodes of"),
    ("episodes-file-before-model", [*EVAL, "--simulator", "learned", "--model", "{textmodel}", "--budget", "2",
                                    "--episodes-file", "{ep_g}", "--out", "{out}/r.csv"], "graph_edges[0]"),
    ("evaluate-no-episodes", ["evaluate", "--policy", "uniform", "--out", "{out}/r.csv"], "--episodes"),
    ("episodes-count-0", ["episodes", "--episodes", "0", "--out", "{out}/e.npz"], "--episodes"),
    ("episodes-seed-negative", ["episodes", "--episodes", "2", "--seed", "-1", "--out", "{out}/e.npz"], "--seed"),
    ("episodes-out-dir", ["episodes", "--episodes", "2", "--out", "{out}"], "directory"),
    # merge-returns
    ("merge-missing", ["merge-returns", "{r0}", "{root}/nope.csv", "--out", "{out}/m.csv"], "nope.csv"),
    ("merge-not-returns", ["merge-returns", "{text}", "--out", "{out}/m.csv"], "notes.txt"),
    ("merge-header-only", ["merge-returns", "{r_header}", "--out", "{out}/m.csv", "--summary", "{out}/s.json"],
     "header.csv"),
    ("merge-seeds", ["merge-returns", "{r0}", "{r1_seed}", "--out", "{out}/m.csv"], "r1_seed.csv"),
    ("merge-policies", ["merge-returns", "{r0}", "{r1_policy}", "--out", "{out}/m.csv"], "r1_policy.csv"),
    ("merge-simulators", ["merge-returns", "{r0}", "{r1_sim}", "--out", "{out}/m.csv"], "r1_sim.csv"),
    ("merge-budgets", ["merge-returns", "{r0}", "{r1_budget}", "--out", "{out}/m.csv"], "r1_budget.csv"),
    ("merge-overlap", ["merge-returns", "{r0}", "{r_overlap}", "--out", "{out}/m.csv"], "episode"),
    ("merge-gap", ["merge-returns", "{r1}", "--out", "{out}/m.csv"], "missing"),
    # report
    ("table1-budget-label", ["report", "table1", "--planner", "oracle:999={s_oracle2}", "--out", "{out}/t1"], "999"),
    ("table1-simulator-label", ["report", "table1", "--planner", "bayes:2={s_oracle2}", "--out", "{out}/t1"], "bayes"),
    ("table1-baseline-label", ["report", "table1", "--baseline", "random-heuristic={s_uniform}", "--out", "{out}/t1"],
     "random-heuristic"),
    ("table1-empty-summary", ["report", "table1", "--planner", "oracle:2={s_empty}", "--out", "{out}/t1"], "n = 0"),
    ("table1-spec", ["report", "table1", "--planner", "oracle={s_oracle2}", "--out", "{out}/t1"], "oracle="),
    ("table1-budget-0", ["report", "table1", "--planner", "oracle:0={s_oracle2}", "--out", "{out}/t1"], "oracle:0"),
    ("table1-missing", ["report", "table1", "--planner", "oracle:2={root}/nope.json", "--out", "{out}/t1"],
     "nope.json"),
    ("table2-unknown-arch", ["report", "table2", "--model-eval", "transformer={e_original}", "--out", "{out}/t2"],
     "transformer"),
    ("table2-mislabelled", ["report", "table2", "--model-eval", "original={e_gru}", "--out", "{out}/t2"],
     "gru_backbone"),
    ("table2-not-eval", ["report", "table2", "--model-eval", "original={s_oracle2}", "--out", "{out}/t2"],
     "s_oracle2.json"),
    ("plots-missing", ["report", "plots", "score", "--table1", "{root}/nope.csv", "--out", "{out}/p"], "nope.csv"),
    # hpo
    ("hpo-ask-reversed", ["hpo", "ask", "--round", "0", "--state-in", "none", "--points", "1", "--out-dir",
                          "{out}/h", "--temperature", "2", "0.05", "--c1", "0.05", "5", "--c2", "0.5", "50", "--k",
                          "1", "3"], "temperature"),
    ("hpo-ask-log-zero", ["hpo", "ask", "--round", "0", "--state-in", "none", "--points", "1", "--out-dir",
                          "{out}/h", "--temperature", "0.05", "2", "--c1", "0", "5", "--c2", "0.5", "50", "--k",
                          "1", "3", "--log-scale", "c1"], "c1"),
    ("hpo-ask-negative-c1", ["hpo", "ask", "--round", "0", "--state-in", "none", "--points", "1", "--out-dir",
                             "{out}/h", "--temperature", "0.05", "2", "--c1", "-1", "5", "--c2", "0.5", "50", "--k",
                             "1", "3"], "c1"),
    ("hpo-tell-missing-state", ["hpo", "tell", "--state-in", "{root}/nope.pkl", "--results", "{s_oracle2}",
                                "--state-out", "{out}/s.pkl"], "nope.pkl"),
    ("hpo-best-not-state", ["hpo", "best", "--state", "{text}", "--out", "{out}/b.json"], "notes.txt"),
]

#: Cases that ran for minutes (or exhausted memory) on the old code: not run when counting it.
HANGS_BEFORE = {"evaluate-budget-1e6", "evaluate-k-1e6"}


def _fill(argv: list[str], ws: dict[str, Path], out: Path) -> list[str]:
    names = {k: str(v) for k, v in ws.items()}
    return [a.format(out=out, **names) for a in argv]


def _record(case: str, outcome: str, detail: str) -> None:
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(json.dumps({"case": case, "outcome": outcome, "detail": detail[-300:]}) + "\n")


@pytest.mark.parametrize(("case", "argv", "culprit"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(case: str, argv: list[str], culprit: str, ws: dict[str, Path],
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if REPORT and case in HANGS_BEFORE and os.environ.get("BAD_INPUT_SKIP_HANGS"):
        _record(case, "hang", "ran for minutes before the fix (issue 12); not re-run")
        pytest.skip("hangs on this code")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("ALCHEMY_MAX_SEARCH_BYTES", str(8 * 2**30))  # the same limit on every machine
    out = tmp_path / "out"
    out.mkdir()
    argv = _fill(argv, ws, out)
    before = sorted(p.name for p in ws["root"].rglob("*"))
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors (exit 2, usage + one error line)
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # noqa: BLE001  (a traceback: what this test exists to prevent)
        _record(case, "traceback", f"{type(exc).__name__}: {exc}")
        if REPORT:
            return
        raise
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    after = sorted(p.name for p in ws["root"].rglob("*"))
    if rc == 0:
        outcome = "silent"
    elif "Traceback" in err:
        outcome = "traceback"
    elif rc not in (1, 2) or len(lines) != 1 or culprit not in lines[0] or left or after != before:
        outcome = "unclear"
    else:
        outcome = "clear"
    _record(case, outcome, f"rc={rc} left={left} {err.strip()}")
    if REPORT:
        return
    assert rc in (1, 2), f"exit code {rc}: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert culprit in lines[0], lines[0]
    assert not left, f"left behind: {left}"
    assert after == before, "the workspace changed"


# --- a full disk --------------------------------------------------------------------------------------

@contextlib.contextmanager
def _tiny_tmpfs(where: Path):
    """A 64 KiB tmpfs at ``where`` (needs root), or None."""
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:  # lazily: a failed in-process write may still hold a descriptor until garbage collection
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_generate_on_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    """Issue 12: HDF5 writing straight to a full disk segfaulted (exit 139) in h5py's clean-up."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    with _tiny_tmpfs(tmp_path / "full") as full:
        if full is None:
            pytest.skip("cannot mount a tmpfs here (not root); the simulated ENOSPC test covers the message")
        for episodes in ("64", "500"):
            r = subprocess.run([sys.executable, "-m", "alchemy_mbrl.cli", "generate", "--shard", "0", "--num-shards",
                                "2", "--episodes", episodes, "--seed", "1", "--out", str(full / "s.h5"),
                                "--no-progress"], capture_output=True, text=True, env=env, timeout=120)
            assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
            assert r.stderr.strip().splitlines()[-1] == f"alchemy-mbrl generate: error: no space left on device: {full}/s.h5"
            assert "Traceback" not in r.stderr
            assert list(full.iterdir()) == []


def test_full_disk_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC from the shard writer and from torch's writer (a RuntimeError) become the same message."""
    import builtins

    from alchemy_mbrl.data import shards
    from alchemy_mbrl.io import atomic_write

    real_open = builtins.open

    def full_open(file, mode="r", *a, **kw):  # type: ignore[no-untyped-def]
        if "w" in mode and str(file).endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(shards, "open", full_open, raising=False)
    rc = main(["generate", "--shard", "0", "--num-shards", "1", "--episodes", "2", "--seed", "0", "--out",
               str(tmp_path / "s.h5"), "--no-progress"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"alchemy-mbrl generate: error: no space left on device: {tmp_path}/s.h5"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="no space left on device: .*ckpt.pt") as info:
        with atomic_write(tmp_path / "ckpt.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed (errno = 28, No space left on device)")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_train_on_a_full_disk_is_a_clear_error(tmp_path: Path, ws: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with _tiny_tmpfs(tmp_path / "full") as full:
        if full is None:
            pytest.skip("cannot mount a tmpfs here (not root)")
        cfg = tmp_path / "c.yaml"
        cfg.write_text("steps: 2\nbatch_size: 2\nd_model: 64\nd_ff: 64\nmlp_hidden: 256\nval_every: 1\n"
                       "checkpoint_every: 1\nthreads: 1\n")
        rc = main(["train", "--data", str(ws["manifest"]), "--config", str(cfg), "--out", str(full / "m"),
                   "--device", "cpu", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2
        assert err[-1].startswith(f"alchemy-mbrl train: error: no space left on device: {full}/m/"), err
        assert [p for p in full.rglob("*") if p.is_file() and p.name.endswith(".tmp")] == []


# --- the workflow's config checks (issue 12, defect 4) -----------------------------------------------

def _config() -> dict:
    import yaml

    return yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())


SCHEMA = Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml"


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["hpo"].update(budget=2.0), "hpo.budget"),
        (lambda c: c.update(seed=11.0), "seed"),
        (lambda c: c["data"].update(shards=2.0), "data.shards"),
        (lambda c: c["evaluate"].update(budgets=[2.0]), "evaluate.budgets[0]"),
        (lambda c: c["hpo"]["space"].update(k=[1.0, 3]), "hpo.space.k[0]"),
        (lambda c: c["train"]["options"].update(d_model=15, n_heads=4), "n_heads"),
        (lambda c: c["train"]["options"].update(d_modle=16), "d_modle"),
        (lambda c: c["train"]["options"].update(dropout=1.5), "dropout"),
        (lambda c: c["train"].update(architecture_options={"no_final_linear": {"lr": -1}}), "lr"),
        (lambda c: c["train"].update(eval_max_episodes=1), "train.eval_max_episodes"),
        (lambda c: c["hpo"]["space"].update(c1=[5.0, 0.05]), "c1"),
        (lambda c: c["hpo"]["space"].update(c1=[0, 5.0], log_scale=["c1"]), "c1"),
        (lambda c: c["hpo"]["space"].update(c1=[-1.0, 5.0], log_scale=[]), "c1"),
        (lambda c: c["hpo"]["space"].update(temperature=[-0.5, 2.0]), "temperature"),
        (lambda c: c["data"].update(validation_shards=4), "data.validation_shards"),
        (lambda c: c["train"].update(architectures=[]), "train.architectures"),
        (lambda c: c["train"].update(architectures=["gru_backbone"]), "evaluate.architecture"),
        (lambda c: c["evaluate"].update(chunks=5, episodes=4), "evaluate.chunks"),
        (lambda c: c["optimal_agents"]["ideal_observer"].update(episodes=16.0), "optimal_agents.ideal_observer.episodes"),
        (lambda c: c["optimal_agents"]["search_oracle"].update(chunks=2.0), "optimal_agents.search_oracle.chunks"),
        (lambda c: c["optimal_agents"]["ideal_observer"].update(chunks=20, episodes=16),
         "optimal_agents.ideal_observer.chunks"),
    ],
)
def test_workflow_config_checks_name_the_key(edit, key: str) -> None:
    from alchemy_mbrl.workflow_config import validate_workflow_config

    cfg = _config()
    validate_workflow_config(cfg, SCHEMA)  # the shipped config passes
    edit(cfg)
    with pytest.raises(ValueError, match="config: ") as info:
        validate_workflow_config(cfg, SCHEMA)
    assert key in str(info.value)


def test_shipped_configs_pass() -> None:
    import yaml

    from alchemy_mbrl.workflow_config import validate_workflow_config

    repo = Path(__file__).parents[1]
    for path in (repo / "config" / "config.yaml", repo / "config" / "paper.yaml", repo / ".test" / "config.yaml"):
        validate_workflow_config(yaml.safe_load(path.read_text()), SCHEMA)


# --- the Python API (defect 7) -----------------------------------------------------------------------

def test_python_api_validates_before_casting() -> None:
    from alchemy_mbrl.env import AlchemyEnv
    from alchemy_mbrl.env.alchemy import TrialItems
    from alchemy_mbrl.env.chemistry import Chemistry

    ok = dict(potion_perm=[[0, 1, 2]] * 2, potion_sign=[[1, 1, 1]] * 2, stone_sign=[[1, -1, 1]] * 2, graph_id=[0, 3])
    Chemistry(**ok)
    for field, value in (("graph_id", [0, 65539]), ("graph_id", [0, 2.5]), ("graph_id", [0, np.nan]),
                         ("potion_perm", [[0, 1], [2, 0], [1, 2]]), ("potion_sign", [[1, 1, 257]] * 2),
                         ("stone_sign", [[1, 1, 1.5]] * 2), ("potion_perm", [[0, 1, 2, 0]] * 2)):
        with pytest.raises(ValueError, match=f"Chemistry.{field}"):
            Chemistry(**{**ok, field: value})
    potions = np.zeros((1, 10, 12))
    for bad in (257, 2.9, np.nan, -1, 8):
        with pytest.raises(ValueError, match="TrialItems.stones"):
            TrialItems(np.full((1, 10, 3), bad), potions)
    with pytest.raises(ValueError, match="TrialItems.potions"):
        TrialItems(np.zeros((1, 10, 3)), np.full((1, 10, 12), 6.0))
    with pytest.raises(RuntimeError, match="before reset"):
        AlchemyEnv(2, seed=0).step(np.array([1, 2]))
    env = AlchemyEnv(2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="actions"):
        env.step(np.array([1e30, 2.0]))


def test_shard_reader_names_dataset_and_index(ws: dict[str, Path]) -> None:
    from alchemy_mbrl.data.shards import ShardError, load_shard

    with pytest.raises(ShardError, match=r"shard-0\.h5: dataset 'obs_codes' holds 9 at index \[3, 17, 20\]"):
        load_shard(ws["badcode_shard"])
    with pytest.raises(ShardError, match=r"badreward\.h5: dataset 'rewards' holds 7 at index \[2, 7\]"):
        load_shard(ws["badreward_shard"], keys=("rewards",))


# === issue 25: the second round, one test per class ====================================================

def _run(argv: list[str], capsys: pytest.CaptureFixture[str], seconds: int = 60) -> tuple[int, list[str], str]:
    """``main(argv)`` in-process under an alarm (a hang fails the test instead of blocking it)."""
    import signal

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"hung for {seconds} s: {argv}")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if "error:" in line], err


def _refused(argv: list[str], culprit: str, capsys: pytest.CaptureFixture[str]) -> str:
    rc, lines, err = _run(argv, capsys)
    assert rc == 2, f"exit {rc}: {err}"
    assert "Traceback" not in err and len(lines) == 1, err
    assert culprit in lines[0], lines[0]
    return lines[0]


def _digest(paths: list[Path]) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in paths}


def test_an_output_never_replaces_an_input(ws: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Class 1: an output that is an input (by name, through a symbolic link, a hard link) or lies in an
    input directory is refused before any work, and the input is unchanged."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    shutil.copy(ws["r0"], a)
    shutil.copy(ws["r1"], b)
    (tmp_path / "link.csv").symlink_to(a)
    os.link(a, tmp_path / "hard.csv")
    model = tmp_path / "model"
    shutil.copytree(ws["model"], model)
    s = tmp_path / "s.json"
    shutil.copy(ws["s_oracle2"], s)
    shutil.copy(ws["s_oracle2"], tmp_path / "t.csv")  # a summary under a name a table prefix writes
    shard = tmp_path / "shard.h5"
    shutil.copy(ws["shard"], shard)
    data = tmp_path / "data"
    manifest = _copy_dataset(ws["manifest"].parent, data)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine\n")
    (tmp_path / "docs" / "config.yaml").write_text("also mine\n")
    keep = [a, b, s, tmp_path / "t.csv", tmp_path / "docs" / "config.yaml", shard, manifest, *model.iterdir(), *data.iterdir()]
    before = _digest(keep)
    cases = [
        (["merge-returns", a, b, "--out", a], "a.csv"),
        (["merge-returns", a, b, "--out", tmp_path / "m.csv", "--summary", b], "b.csv"),
        (["merge-returns", a, b, "--out", tmp_path / "link.csv"], "link.csv"),
        (["merge-returns", a, b, "--out", tmp_path / "hard.csv"], "hard.csv"),
        (["merge-returns", a, b, "--out", tmp_path / "m.csv", "--summary", tmp_path / "m.csv"], "m.csv"),
        (["data", "manifest", shard, "--validation", "0", "--out", shard], "shard.h5"),
        (["model-eval", "--model", model, "--data", manifest, "--out", model / "model.pt"], "model.pt"),
        (["model-eval", "--model", model, "--data", manifest, "--out", model / "eval.json"], "model"),
        (["bayes-entropy", "--data", manifest, "--out", data / "shard-0.h5"], "shard-0.h5"),
        (["train", "--data", manifest, "--out", data], "data"),
        (["train", "--data", manifest, "--config", ws["cfg_small"], "--device", "cpu", "--out", tmp_path / "docs",
          "--no-progress"], "notes.txt"),  # a directory of the user's, not a model directory
        (["evaluate", "--policy", "uniform", "--episodes", "2", "--params", s, "--out", s], "s.json"),
        (["report", "table1", "--planner", f"oracle:2={tmp_path / 't.csv'}", "--out", tmp_path / "t"], "t.csv"),
        (["hpo", "best", "--state", s, "--out", s], "s.json"),
    ]
    for argv, culprit in cases:
        _refused(argv, culprit, capsys)
    assert _digest(keep) == before


def test_no_link_redirects_a_write(ws: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Class 2: a symbolic link planted at a lock file is refused; one planted at an output path is
    replaced, never written through (the file it points to is unchanged)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "m"
    out.mkdir()
    (out / ".train.lock").symlink_to(victim)
    _refused(["train", "--data", ws["manifest"], "--config", ws["cfg_small"], "--device", "cpu", "--out", out,
              "--no-progress"], ".train.lock", capsys)
    assert victim.read_text() == "precious\n"
    (tmp_path / "merged.csv").symlink_to(victim)
    rc, _, err = _run(["merge-returns", ws["r0"], ws["r1"], "--out", tmp_path / "merged.csv"], capsys)
    assert rc == 0, err
    assert victim.read_text() == "precious\n" and not (tmp_path / "merged.csv").is_symlink()


class _Payload:
    """Unpickling this creates the file ``path``: what a crafted model or state would do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


def test_no_file_runs_code(ws: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Class 3: a model file, a checkpoint or an HPO state carrying a pickle payload is refused in one line
    and the payload never runs."""
    import pickle

    import torch

    pwned = tmp_path / "PWNED"
    model = tmp_path / "model"
    model.mkdir()
    torch.save({"config": {}, "state_dict": {}, "x": _Payload(pwned)}, model / "model.pt")
    _refused(["model-eval", "--model", model, "--data", ws["manifest"], "--device", "cpu", "--out",
              tmp_path / "e.json"], "model.pt", capsys)
    _refused(["evaluate", "--simulator", "learned", "--model", model, "--device", "cpu", "--budget", "2",
              "--episodes", "2", "--no-progress", "--out", tmp_path / "r.csv"], "model.pt", capsys)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {}, "optimizer": {}, "step": 1, "config": {}, "x": _Payload(pwned)}, run / "checkpoint.pt")
    _refused(["train", "--data", ws["manifest"], "--config", ws["cfg_small"], "--device", "cpu", "--out", run,
              "--no-progress"], "checkpoint.pt", capsys)
    state = tmp_path / "state.pkl"
    state.write_bytes(pickle.dumps(_Payload(pwned)))
    _refused(["hpo", "best", "--state", state, "--out", tmp_path / "b.json"], "state.pkl", capsys)
    _refused(["hpo", "tell", "--state-in", state, "--results", ws["s_oracle2"], "--state-out", tmp_path / "s2.pkl"],
             "state.pkl", capsys)
    _refused(["hpo", "ask", "--round", "1", "--state-in", state, "--points", "1", "--out-dir", tmp_path / "h"],
             "state.pkl", capsys)
    yml = tmp_path / "c.yaml"
    yml.write_text(f"steps: !!python/object/apply:os.mkdir ['{pwned}']\n")
    _refused(["train", "--data", ws["manifest"], "--config", yml, "--out", tmp_path / "m"], "c.yaml", capsys)
    assert not pwned.exists()
    assert not (tmp_path / "h").exists() and not (tmp_path / "m").exists()


def test_inputs_are_regular_files(ws: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Class 4: a FIFO, a device or a directory where a file is expected is refused at once (a FIFO used to
    block forever); an input over the size limit is refused before it is read."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for argv in (["train", "--data", ws["manifest"], "--config", fifo, "--out", tmp_path / "m"],
                 ["train", "--data", fifo, "--out", tmp_path / "m"],
                 ["merge-returns", ws["r0"], fifo, "--out", tmp_path / "x.csv"],
                 ["evaluate", "--policy", "uniform", "--episodes", "2", "--episodes-file", fifo, "--out",
                  tmp_path / "x.csv"],
                 ["evaluate", "--simulator", "oracle", "--budget", "2", "--episodes", "2", "--params", fifo,
                  "--out", tmp_path / "x.csv"],
                 ["hpo", "best", "--state", fifo, "--out", tmp_path / "b.json"],
                 ["report", "table2", "--model-eval", f"original={fifo}", "--out", tmp_path / "t"],
                 ["env", "replay", "--traces", fifo],
                 ["data", "inspect", fifo]):
        assert "FIFO" in _refused(argv, "fifo", capsys)
    assert "device" in _refused(["train", "--data", ws["manifest"], "--config", "/dev/zero", "--out",
                                 tmp_path / "m"], "/dev/zero", capsys)
    _refused(["hpo", "tell", "--state-in", tmp_path, "--results", ws["s_oracle2"], "--state-out",
              tmp_path / "s.pkl"], "directory", capsys)
    monkeypatch.setenv("ALCHEMY_MAX_INPUT_BYTES", "10")
    _refused(["report", "table1", "--planner", f"oracle:2={ws['s_oracle2']}", "--out", tmp_path / "t"],
             "bytes", capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_one_source_of_truth_for_value_ranges(ws: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Class 5: what training refuses is refused when the workflow config loads, by the same code; a YAML
    key given twice, NaN/infinity and integers beyond 64 bits are errors naming the file and the key."""
    from alchemy_mbrl.workflow_config import validate_workflow_config

    for text, culprit in (("grad_clip: -1\n", "grad_clip"), ("max_seconds: -5\n", "max_seconds"),
                          ("checkpoint_every: 0\n", "checkpoint_every"), ("lr: .nan\n", "lr"),
                          ("steps: 2\nsteps: 3\n", "steps"), ("steps: 99999999999999999999999\n", "steps"),
                          ("adam_betas: [0.9, 1.5]\n", "adam_betas"), ("seed: -1\n", "seed")):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text)
        line = _refused(["train", "--data", ws["manifest"], "--config", cfg, "--out", tmp_path / "m"], culprit,
                        capsys)
        assert "c.yaml" in line or "config key" in line
        wf = _config()
        wf["train"]["options"].update({culprit: -1})
        with pytest.raises(ValueError, match=culprit):
            validate_workflow_config(wf, SCHEMA)
    wf = _config()
    wf["hpo"]["seed"] = 2**40
    with pytest.raises(ValueError, match="hpo.seed"):
        validate_workflow_config(wf, SCHEMA)
    wf = _config()
    wf["evaluate"]["episodes"] = float("inf")
    with pytest.raises(ValueError, match="evaluate.episodes"):
        validate_workflow_config(wf, SCHEMA)
    dup = tmp_path / "wf.yaml"
    dup.write_text((Path(__file__).parents[1] / "config" / "config.yaml").read_text() + "\nseed: 5\n")
    with pytest.raises(ValueError, match=r"wf\.yaml.*'seed' appears twice"):
        validate_workflow_config(_config(), SCHEMA, config_files=[dup])
    assert not (tmp_path / "m").exists()


def test_provenance_is_checked(ws: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Class 6: a manifest listing a shard twice (or in both splits) or with counts that do not match is
    refused; a checkpoint refuses to resume on another dataset. (model.pt bytes: test_model_train.)"""
    src = json.loads(ws["manifest"].read_text())
    d = tmp_path / "d"
    manifest = _copy_dataset(ws["manifest"].parent, d)

    def variant(name: str, edit) -> Path:  # noqa: ANN001
        m = json.loads(json.dumps(src))
        edit(m)
        (d / name).write_text(json.dumps(m))
        return d / name

    both = variant("both.json", lambda m: m["shards"].append({**m["shards"][0], "split": "validation"}))
    twice = variant("twice.json", lambda m: m["shards"].insert(0, dict(m["shards"][0])))
    count = variant("count.json", lambda m: (m["shards"][0].update(episodes=5), m["episodes"].update(train=5)))
    total = variant("total.json", lambda m: m["episodes"].update(train=99))
    frac = variant("frac.json", lambda m: m["shards"][0].update(episodes=6.5))
    _refused(["bayes-entropy", "--data", both, "--out", tmp_path / "b.json", "--no-progress"], "both the", capsys)
    _refused(["model-eval", "--model", ws["model"], "--data", twice, "--device", "cpu", "--out", tmp_path / "e.json"],
             "twice", capsys)
    _refused(["train", "--data", count, "--config", ws["cfg_small"], "--device", "cpu", "--out", tmp_path / "m",
              "--no-progress"], "holds 6", capsys)
    _refused(["data", "inspect", total], "episodes.train", capsys)
    _refused(["data", "inspect", frac], "integer", capsys)
    # a checkpoint of one dataset does not resume on another
    run = tmp_path / "run"
    rc, _, err = _run(["train", "--data", manifest, "--config", ws["cfg_small"], "--device", "cpu", "--out", run,
                       "--no-progress", "--stop-after", "0"], capsys)
    assert rc == 0 and (run / "checkpoint.pt").exists(), err
    other = _copy_dataset(ws["manifest"].parent, tmp_path / "other")
    other.write_text(other.read_text().replace('"package_version"', '"note": "another", "package_version"'))
    _refused(["train", "--data", other, "--config", ws["cfg_small"], "--device", "cpu", "--out", run,
              "--no-progress"], "another dataset", capsys)
    assert not (tmp_path / "m").exists() and not (tmp_path / "b.json").exists()


def test_numbers_that_cannot_be_true_are_refused(ws: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Class 7: non-finite returns, negative standard errors, non-integer counts, negative entropies."""
    good = json.loads(ws["s_oracle2"].read_text())
    ent = json.loads(ws["e_original"].read_text())
    cases = []
    for name, obj in (("sem", {**good, "sem": -1.0}), ("n", {**good, "n": 2.5}), ("mean", {**good, "mean": "NaN"}),
                      ("std", {**good, "std": -2.0})):
        p = tmp_path / f"s_{name}.json"
        p.write_text(json.dumps(obj).replace('"NaN"', "NaN"))
        cases.append((["report", "table1", "--planner", f"oracle:2={p}", "--out", tmp_path / "t"],
                      "NaN" if name == "mean" else f"'{name}'"))
        cases.append((["hpo", "tell", "--state-in", ws["s_oracle2"], "--results", p, "--state-out",
                       tmp_path / "x.pkl"], "s_oracle2.json"))  # the state is refused first: still one line
    for key, value in (("entropy_nats_per_step", -0.5), ("chemistry_nats_per_step", -1.0), ("entropy_sem", -0.1),
                       ("n_episodes", 6.5)):
        p = tmp_path / f"e_{key}.json"
        p.write_text(json.dumps({**ent, key: value}))
        cases.append((["report", "table2", "--model-eval", f"original={p}", "--out", tmp_path / "t"], key))
    for col, value in (("return", "inf"), ("return", "nan"), ("episode", "1.5"), ("budget", "-3")):
        df = ws["r1"].read_text().splitlines()
        header = df[0].split(",")
        row = df[1].split(",")
        row[header.index(col)] = value
        p = tmp_path / f"r_{col}_{value}.csv"
        p.write_text("\n".join([df[0], ",".join(row), *df[2:]]) + "\n")
        cases.append((["merge-returns", ws["r0"], p, "--out", tmp_path / "m.csv"], col))
    hist = tmp_path / "h.csv"
    hist.write_text("trial,round,point,temperature,c1,c2,k,gamma,mean,sem,n,best_mean,best_sem\n"
                    "0,0,0,1,1,1,1,0.99,12.0,-1.0,8,12.0,1.0\n")
    cases.append((["report", "plots", "hpo", "--history", hist, "--out", tmp_path / "t"], "'sem'"))
    log = tmp_path / "log.csv"
    log.write_text("step,epoch,train_loss,val_loss,learning_rate,seconds,tokens_per_s\n1,0.1,2.0,-5,0.1,1,1\n")
    cases.append((["report", "plots", "training", "--log", f"original={log}", "--out", tmp_path / "t"], "'val_loss'"))
    for argv, culprit in cases:
        _refused(argv, culprit, capsys)
    assert not any(tmp_path.glob("t.*")) and not (tmp_path / "m.csv").exists() and not (tmp_path / "x.pkl").exists()


def test_errors_before_work_and_nothing_left_after(ws: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Class 8: an output that cannot be written fails before the work; a command that fails (or is
    interrupted with Ctrl-C) leaves nothing it created and prints one line."""
    import time

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    from alchemy_mbrl import evaluate

    def no_work(*args: object, **kw: object) -> None:
        raise AssertionError("the evaluation ran before the output was checked")

    monkeypatch.setattr(evaluate, "evaluate_policy", no_work)
    t0 = time.perf_counter()
    _refused(["evaluate", "--simulator", "oracle", "--budget", "50", "--episodes", "64", "--no-progress", "--out",
              blocker / "r.csv"], "file.txt", capsys)
    _refused(["merge-returns", ws["r0"], ws["r1"], "--out", tmp_path / "m.csv", "--summary", blocker / "s.json"],
             "file.txt", capsys)
    _refused(["episodes", "--episodes", "2", "--out", "/dev/null"], "/dev/null", capsys)  # never renamed onto
    assert Path("/dev/null").is_char_device()
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "m.csv").exists()
    monkeypatch.undo()

    # merge-returns failing after its merged CSV was written: the CSV goes too
    from alchemy_mbrl import evaluate

    def full_disk(*args: object, **kw: object) -> None:
        raise OSError(28, "no space left on device: s.json")

    monkeypatch.setattr(evaluate, "write_json", full_disk)
    _refused(["merge-returns", ws["r0"], ws["r1"], "--out", tmp_path / "new" / "m.csv", "--summary",
              tmp_path / "new" / "s.json"], "s.json", capsys)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()

    # a failed first training run leaves no directory (no .train.lock); Ctrl-C prints one line
    from alchemy_mbrl.model import train as train_mod

    def boom(*args: object, **kw: object) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(train_mod, "_train", boom)
    _refused(["train", "--data", ws["manifest"], "--config", ws["cfg_small"], "--device", "cpu", "--out",
              tmp_path / "models" / "m", "--no-progress"], "RuntimeError", capsys)
    assert not (tmp_path / "models").exists()

    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_train", interrupted)
    rc, lines, err = _run(["train", "--data", ws["manifest"], "--config", ws["cfg_small"], "--device", "cpu",
                           "--out", tmp_path / "m2", "--no-progress"], capsys)
    assert rc == 130 and len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "m2").exists()


def test_a_read_only_place_fails_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Class 8: --out on a read-only file system fails at once (it used to fail after the evaluation), even
    for root, whom access() lets write anywhere (a read-only tmpfs when this runs as root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True)
    if r.returncode != 0:
        ro.chmod(0o555)
        if os.access(ro, os.W_OK):
            pytest.skip("neither a read-only mount nor a read-only directory is possible here")
    from alchemy_mbrl import evaluate

    def no_work(*args: object, **kw: object) -> None:
        raise AssertionError("the evaluation ran before the output was checked")

    monkeypatch.setattr(evaluate, "evaluate_policy", no_work)
    try:
        _refused(["evaluate", "--simulator", "oracle", "--budget", "50", "--episodes", "64", "--no-progress",
                  "--out", ro / "sub" / "r.csv"], "r.csv", capsys)
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", str(ro)], capture_output=True)
        else:
            ro.chmod(0o755)
