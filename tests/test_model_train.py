"""Training, exact resume, CLI, evaluation and the trial-start floor, on small generated datasets."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alchemy_mbrl.env import codec
from alchemy_mbrl.data.shards import load_shard
from alchemy_mbrl.cli import model as commands
from alchemy_mbrl.model.config import resolve_config
from alchemy_mbrl.model.data import EpisodeSampler, load_split
from alchemy_mbrl.env.constants import TRIAL_START_FLOOR_NATS, TRIAL_START_TARGETS
from alchemy_mbrl.model.evaluate import evaluate_model, per_episode_losses
from alchemy_mbrl.model.checkpoint import load_model
from alchemy_mbrl.model.world_model import WorldModel
from .model_helpers import ARCHS, TINY, make_dataset


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), train_episodes=64, val_episodes=48)


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    commands.register(sub)
    args = p.parse_args(list(argv))
    return args.func(args)


def write_config(path: Path, **kw: object) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({**TINY, "val_episodes": 8, "log_every": 1, **kw}))
    return path


def test_floor_constant() -> None:
    assert TRIAL_START_FLOOR_NATS == pytest.approx(9 * (3 * math.log(8) + 12 * math.log(6)) / 200)
    assert TRIAL_START_FLOOR_NATS == pytest.approx(1.248, abs=5e-4)
    assert TRIAL_START_TARGETS.sum() == 9 and TRIAL_START_TARGETS[19] and not TRIAL_START_TARGETS[199]


def test_trial_start_floor_on_data(tmp_path: Path) -> None:
    """On data, new-trial items are uniform: plug-in entropies of a new trial's stone vertices and potion
    colours approach ln 8 and ln 6, i.e. the floor's 3 ln 8 + 12 ln 6 nats per trial start."""
    m = make_dataset(tmp_path, train_episodes=1500, val_episodes=10, seed=11)
    d = load_shard(m.parent / "shard-000.h5", keys=("obs_codes",))
    starts = d["obs_codes"][:, 20:181:20]  # [N, 9, 39] observations at t = 20..180
    stones = starts[..., [5 * s + i for s in range(3) for i in range(3)]].reshape(-1, 3, 3)
    vertex = (stones[..., 0] * 4 + stones[..., 1] * 2 + stones[..., 2]).reshape(-1)
    colours = starts[..., [15 + 2 * p for p in range(12)]].reshape(-1)

    def plug_in_entropy(x: np.ndarray) -> float:
        p = np.bincount(x) / len(x)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    per_start = 3 * plug_in_entropy(vertex) + 12 * plug_in_entropy(colours)
    assert per_start * 9 / 200 == pytest.approx(TRIAL_START_FLOOR_NATS, abs=2e-3)
    assert len(np.unique(vertex)) == 8 and len(np.unique(colours)) == 6  # no "used" codes at a trial start


def test_episode_sampler_resumes_exactly() -> None:
    a = EpisodeSampler(10, seed=4)
    seq = [a.next(4) for _ in range(7)]
    b = EpisodeSampler(10, seed=4)
    for _ in range(3):
        b.next(4)
    c = EpisodeSampler(10, seed=4)
    c.load_state_dict(b.state_dict())
    assert all(np.array_equal(x, c.next(4)) for x in seq[3:])
    assert sorted(np.concatenate(seq[:5])[:10].tolist()) == list(range(10))  # an epoch is a permutation
    with pytest.raises(ValueError, match="episodes"):
        EpisodeSampler(11, seed=4).load_state_dict(b.state_dict())


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_trains_and_loads(arch: str, manifest: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", steps=3, batch_size=4, val_every=2, checkpoint_every=2)
    out = tmp_path / arch
    assert cli("train", "--config", str(cfg), "--data", str(manifest), "--arch", arch, "--out", str(out), "--no-progress") == 0
    for name in ("config.yaml", "model.pt", "train_log.csv", "checkpoint.pt"):
        assert (out / name).exists(), name
    import pandas as pd

    log = pd.read_csv(out / "train_log.csv")
    assert list(log.columns) == ["step", "epoch", "train_loss", "val_loss", "learning_rate", "seconds", "tokens_per_s"]
    assert log["step"].tolist() == [1, 2, 3] and log["val_loss"].notna().tolist() == [False, True, True]
    assert log["learning_rate"].iloc[0] == pytest.approx(2e-5 if arch == "no_final_linear" else 1e-4)
    model = load_model(out, "cpu")
    assert model.config.arch == arch and not model.training
    res = evaluate_model(model, manifest, max_episodes=4)
    assert res["entropy_nats_per_step"] == pytest.approx(res["trial_start_nats_per_step"] + res["chemistry_nats_per_step"])


def test_resume_gives_identical_weights(manifest: Path, tmp_path: Path) -> None:
    """N steps straight == N/2 steps, 'killed', then the same command re-run (CPU, bit-exact)."""
    cfg = write_config(tmp_path / "c.yaml", steps=6, batch_size=4, micro_batch=2, val_every=4, checkpoint_every=2)
    base = ["--config", str(cfg), "--data", str(manifest), "--no-progress"]
    assert cli("train", *base, "--out", str(tmp_path / "straight")) == 0
    assert cli("train", *base, "--out", str(tmp_path / "resumed"), "--stop-after", "3") == 0
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 3
    assert cli("train", *base, "--out", str(tmp_path / "resumed")) == 0
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # issue 25: the file itself is reproducible (no temporary name, time or order inside)
    assert (tmp_path / "straight" / "model.pt").read_bytes() == (tmp_path / "resumed" / "model.pt").read_bytes()
    oa = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    ob = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)
    import pandas as pd

    assert pd.read_csv(tmp_path / "resumed" / "train_log.csv")["step"].tolist() == list(range(1, 7))
    before = (tmp_path / "resumed" / "model.pt").read_bytes()
    assert cli("train", *base, "--out", str(tmp_path / "resumed")) == 0  # finished: re-running is a no-op
    assert (tmp_path / "resumed" / "model.pt").read_bytes() == before
    # a different seed gives different weights (the comparison above can fail)
    cfg2 = write_config(tmp_path / "c2.yaml", steps=6, batch_size=4, micro_batch=2, val_every=4, checkpoint_every=2, seed=1)
    assert cli("train", "--config", str(cfg2), "--data", str(manifest), "--no-progress", "--out", str(tmp_path / "seed1")) == 0
    c = torch.load(tmp_path / "seed1" / "model.pt", weights_only=True)["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # resuming with a changed learning rate is refused, naming the key
    cfg3 = write_config(tmp_path / "c3.yaml", steps=8, batch_size=4, micro_batch=2, lr=1e-3)
    with pytest.raises(ValueError, match="lr"):
        cli("train", "--config", str(cfg3), "--data", str(manifest), "--no-progress", "--out", str(tmp_path / "resumed"))


def test_resume_with_cosine_schedule_is_exact(manifest: Path, tmp_path: Path) -> None:
    """Warm-up + cosine decay: the logged lr follows config.lr_factor, and a run killed mid-schedule and
    resumed gives the uninterrupted run's weights and lr bit for bit; the schedule's keys, and `steps`
    (the decay ends at the last step), cannot change on resume."""
    import pandas as pd

    from alchemy_mbrl.model.config import lr_factor

    sched = dict(warmup_steps=2, lr_schedule="cosine", lr_min_ratio=0.2, lr=1e-3)
    cfg = write_config(tmp_path / "c.yaml", steps=7, batch_size=4, micro_batch=2, val_every=4, checkpoint_every=2, **sched)
    base = ["--config", str(cfg), "--data", str(manifest), "--no-progress"]
    assert cli("train", *base, "--out", str(tmp_path / "straight")) == 0
    assert cli("train", *base, "--out", str(tmp_path / "resumed"), "--stop-after", "3") == 0
    ck = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 3 and ck["scheduler"]["last_epoch"] == 3
    assert cli("train", *base, "--out", str(tmp_path / "resumed")) == 0
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _, t = resolve_config("original", {**TINY, "steps": 7, **sched})
    want = [1e-3 * lr_factor(s, t) for s in range(7)]
    for run in ("straight", "resumed"):
        lr = pd.read_csv(tmp_path / run / "train_log.csv")["learning_rate"].to_numpy()
        np.testing.assert_allclose(lr, want, rtol=1e-5)
    assert want[0] == pytest.approx(5e-4) and want[1] == want[2] == pytest.approx(1e-3) and want[6] == pytest.approx(2e-4)
    for key, value in (("steps", 9), ("warmup_steps", 1), ("lr_min_ratio", 0.5), ("lr_schedule", "constant")):
        cfg2 = write_config(tmp_path / f"{key}.yaml", **{**dict(steps=7, batch_size=4, micro_batch=2, **sched), key: value})
        with pytest.raises(ValueError, match=f"{key}="):
            cli("train", "--config", str(cfg2), "--data", str(manifest), "--no-progress", "--out", str(tmp_path / "resumed"))
    # a constant schedule is not tied to `steps`: a finished run can be extended
    cfg3 = write_config(tmp_path / "const.yaml", steps=2, batch_size=4)
    assert cli("train", "--config", str(cfg3), "--data", str(manifest), "--no-progress", "--out", str(tmp_path / "c")) == 0
    cfg4 = write_config(tmp_path / "const4.yaml", steps=3, batch_size=4)
    assert cli("train", "--config", str(cfg4), "--data", str(manifest), "--no-progress", "--out", str(tmp_path / "c")) == 0
    assert torch.load(tmp_path / "c" / "model.pt", weights_only=True)["step"] == 3


def test_gradient_accumulation_matches_full_batch(manifest: Path, tmp_path: Path) -> None:
    """micro_batch only splits the work: without dropout, the weights match the full-batch run."""
    out = {}
    for name, micro in (("full", None), ("micro", 2)):
        cfg = write_config(tmp_path / f"{name}.yaml", steps=2, batch_size=6, micro_batch=micro, dropout=0.0, lr=1e-3)
        assert cli("train", "--config", str(cfg), "--data", str(manifest), "--no-progress", "--out", str(tmp_path / name)) == 0
        out[name] = torch.load(tmp_path / name / "model.pt", weights_only=True)["state_dict"]
    for key in out["full"]:
        torch.testing.assert_close(out["micro"][key], out["full"][key], atol=2e-5, rtol=1e-4)
    import pandas as pd

    la, lb = (pd.read_csv(tmp_path / n / "train_log.csv")["train_loss"].to_numpy() for n in ("full", "micro"))
    np.testing.assert_allclose(la, lb, rtol=1e-5)


def test_wall_clock_budget_stops_and_writes_model(manifest: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", steps=10_000, batch_size=2, max_seconds=0.5)
    out = tmp_path / "m"
    assert cli("train", "--config", str(cfg), "--data", str(manifest), "--no-progress", "--out", str(out)) == 0
    step = torch.load(out / "model.pt", weights_only=True)["step"]
    assert 1 <= step < 10_000


def test_overfitting_drives_loss_and_chemistry_part_down() -> None:
    """A small model overfitting 2 episodes: the loss falls far below its start, the chemistry part to ~0."""
    from .model_helpers import tiny_model

    torch.manual_seed(0)
    model = tiny_model("original", dropout=0.0, mlp_hidden=64)
    model.train()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        m = make_dataset(Path(d), train_episodes=2, val_episodes=2, seed=5)
        data = load_split(m, "train")
    o, a, r = (torch.from_numpy(x) for x in (data.obs_codes, data.actions, data.reward_codes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tot0, _ = per_episode_losses(model, data)
    model.train()
    chem, total = [], []
    for step in range(1, 151):
        loss = model.loss(o, a, r)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 110 and step % 20 == 10:  # Adam at this lr has occasional spikes: look at the last few
            tot, start = per_episode_losses(model, data)
            model.train()
            chem.append((tot - start).sum() / 400)
            total.append(tot.sum() / 400)
    assert min(total) < 0.01 * tot0.sum() / 400
    assert min(chem) < 0.2  # from ~45 nats/step at initialisation


def test_model_eval_cli_and_floor_on_held_out(manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A briefly trained model, on held-out episodes, never beats the trial-start floor."""
    cfg = write_config(tmp_path / "c.yaml", steps=25, batch_size=8, lr=3e-3, dropout=0.0, val_every=0)
    out = tmp_path / "m"
    assert cli("train", "--config", str(cfg), "--data", str(manifest), "--no-progress", "--out", str(out)) == 0
    res_path = tmp_path / "eval" / "res.json"
    assert cli("model-eval", "--model", str(out), "--data", str(manifest), "--out", str(res_path)) == 0
    res = json.loads(res_path.read_text())
    for key in ("model", "entropy_nats_per_step", "entropy_sem", "trial_start_nats_per_step", "chemistry_nats_per_step",
                "n_transitions", "n_episodes"):
        assert key in res
    assert res["n_episodes"] == 48 and res["n_transitions"] == 48 * 200 and res["model"] == "original"
    assert res["entropy_nats_per_step"] == pytest.approx(res["trial_start_nats_per_step"] + res["chemistry_nats_per_step"])
    assert res["trial_start_nats_per_step"] >= TRIAL_START_FLOOR_NATS - 0.02
    assert 0 < res["entropy_sem"] < res["entropy_nats_per_step"]
    log = json.loads(json.dumps(res))
    assert "entropy:" in capsys.readouterr().out
    # the log's final validation loss is the same quantity (on the first val_episodes episodes)
    import pandas as pd

    assert pd.read_csv(out / "train_log.csv")["val_loss"].dropna().iloc[-1] > 0 and log
    # issue 27: --episodes-out writes each validation episode's entropy, which averages to the record's
    from alchemy_mbrl.stats import mean_sem, read_episode_entropies

    per = tmp_path / "eval" / "res.csv"
    assert cli("model-eval", "--model", str(out), "--data", str(manifest), "--out", str(tmp_path / "eval" / "r2.json"),
               "--episodes-out", str(per)) == 0
    df = pd.read_csv(per)
    assert list(df.columns) == ["episode", "entropy_nats_per_step", "trial_start_nats_per_step"]
    assert list(df["episode"]) == list(range(48))
    e = read_episode_entropies(per)
    s = mean_sem(e.to_numpy())
    assert (s.mean, s.sem) == (pytest.approx(res["entropy_nats_per_step"]), pytest.approx(res["entropy_sem"]))
    assert df["trial_start_nats_per_step"].mean() == pytest.approx(res["trial_start_nats_per_step"])


def test_bad_inputs(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest"):
        cli("train", "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path / "m"))
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        cli("train", "--data", str(manifest), "--arch", "resnet", "--out", str(tmp_path / "m"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="'learning_rate'"):
        cli("train", "--config", str(bad), "--data", str(manifest), "--out", str(tmp_path / "m"))
    with pytest.raises(FileNotFoundError, match="config"):
        cli("train", "--config", str(tmp_path / "missing.yaml"), "--data", str(manifest), "--out", str(tmp_path / "m"))
    with pytest.raises(FileNotFoundError, match="model.pt"):
        cli("model-eval", "--model", str(tmp_path / "empty"), "--data", str(manifest), "--out", str(tmp_path / "x.json"))
    from alchemy_mbrl.data.shards import ShardError

    bad_manifest = tmp_path / "m.json"
    bad_manifest.write_text("{not json")
    with pytest.raises(ShardError):
        cli("train", "--data", str(bad_manifest), "--out", str(tmp_path / "m2"), "--no-progress")


def test_cli_is_registered_and_fast_to_import() -> None:
    import subprocess
    import sys

    src = Path(__file__).resolve().parents[1] / "src"
    code = ("import sys; from alchemy_mbrl import cli; assert 'alchemy_mbrl.cli.model' in cli.COMMAND_MODULES; "
            "cli.build_parser(); assert 'torch' not in sys.modules, 'torch imported at CLI start'")
    r = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(src)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_untrained_model_scores_uniform_losses(manifest: Path) -> None:
    cfg, _ = resolve_config("original", TINY)
    torch.manual_seed(0)
    res = evaluate_model(WorldModel(cfg), manifest, max_episodes=4)
    uniform = float(np.log(codec.NUM_CATEGORIES).sum() + np.log(5))
    assert res["entropy_nats_per_step"] == pytest.approx(uniform, rel=0.15)


# ---- issue 11: resume off the CPU, the log through Snakemake's deletions, one trainer per directory ----


class _MappedOffCpu:
    """Stands for an RNG state that ``torch.load`` mapped to a GPU: not a CPU ByteTensor, so
    ``torch.set_rng_state`` refuses it (as it refuses a CUDA tensor) until it is moved with ``.to``/``.cpu``."""

    def __init__(self, t: torch.Tensor) -> None:
        self._t = t

    def to(self, *args: object, **kw: object) -> torch.Tensor:
        return self._t.to(*args, **kw)

    def cpu(self) -> torch.Tensor:
        return self._t.cpu()


def test_resume_restores_rng_state_mapped_off_cpu(manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint whose RNG state comes back on a non-CPU device (as ``map_location="cuda"`` did) resumes
    without error, to the weights of an uninterrupted run."""
    from alchemy_mbrl.model import checkpoint as ckpt_mod
    from alchemy_mbrl.model import train as train_mod

    with pytest.raises(TypeError, match="ByteTensor"):  # the defect: what a GPU-mapped state does
        torch.set_rng_state(torch.load(_stopped_run(manifest, tmp_path / "probe", 2), weights_only=True,
                                       map_location="meta")["rng"]["torch"])
    real = ckpt_mod.load_checkpoint

    def load_mapped_off_cpu(*args: object, **kw: object) -> dict:
        ckpt = real(*args, **kw)
        ckpt["rng"]["torch"] = _MappedOffCpu(ckpt["rng"]["torch"])
        return ckpt

    monkeypatch.setattr(train_mod, "load_checkpoint", load_mapped_off_cpu)
    cfg = write_config(tmp_path / "c.yaml", steps=4, batch_size=4, val_every=2, checkpoint_every=2)
    base = ["--config", str(cfg), "--data", str(manifest), "--no-progress"]
    assert cli("train", *base, "--out", str(tmp_path / "straight")) == 0
    assert cli("train", *base, "--out", str(tmp_path / "resumed"), "--stop-after", "2") == 0
    assert cli("train", *base, "--out", str(tmp_path / "resumed")) == 0  # resumes through the stub
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # dropout masks after the resume drew the same numbers
    # and a checkpoint always loads to the CPU, whatever device trains
    assert real(tmp_path / "resumed" / "checkpoint.pt")["rng"]["torch"].device.type == "cpu"


def _stopped_run(manifest: Path, out: Path, stop: int) -> Path:
    cfg = write_config(out.parent / f"{out.name}.yaml", steps=stop + 2, batch_size=2)
    assert cli("train", "--config", str(cfg), "--data", str(manifest), "--no-progress", "--out", str(out),
               "--stop-after", str(stop)) == 0
    return out / "checkpoint.pt"


def test_training_log_survives_snakemake_deleting_outputs(manifest: Path, tmp_path: Path) -> None:
    """Snakemake deletes a failed job's declared outputs (``model.pt``, ``train_log.csv``); re-running
    ``train`` restores the whole log from the checkpoint and never writes a NaN validation loss."""
    import pandas as pd

    cfg = write_config(tmp_path / "c.yaml", steps=14, batch_size=2, val_every=4, checkpoint_every=4)
    base = ["--config", str(cfg), "--data", str(manifest), "--no-progress"]
    assert cli("train", *base, "--out", str(tmp_path / "straight")) == 0
    ref = pd.read_csv(tmp_path / "straight" / "train_log.csv")
    out = tmp_path / "m"
    # killed at step 10 (after the checkpoint of step 8 and the rows up to 10), the log deleted
    assert cli("train", *base, "--out", str(out), "--stop-after", "10") == 0
    (out / "train_log.csv").unlink()
    assert cli("train", *base, "--out", str(out)) == 0
    log = pd.read_csv(out / "train_log.csv")
    assert log["step"].tolist() == list(range(1, 15))  # one row per logged step: no gap, no duplicate
    np.testing.assert_array_equal(log["train_loss"].to_numpy(), ref["train_loss"].to_numpy())
    both = ref["val_loss"].notna().to_numpy()  # steps 4, 8, 12, 14 (the stopped run also validated at 10)
    assert log["step"][both].tolist() == [4, 8, 12, 14]
    np.testing.assert_allclose(log["val_loss"][both].to_numpy(), ref["val_loss"][both].to_numpy(), rtol=1e-6)
    final = torch.load(out / "model.pt", weights_only=True)["val_loss"]
    assert math.isfinite(final) and final == pytest.approx(ref["val_loss"].iloc[-1], abs=1e-6)
    # killed after the final checkpoint but before model.pt: both outputs deleted, checkpoint at the last step
    (out / "train_log.csv").unlink()
    (out / "model.pt").unlink()
    assert cli("train", *base, "--out", str(out)) == 0
    assert pd.read_csv(out / "train_log.csv")["step"].tolist() == list(range(1, 15))
    assert torch.load(out / "model.pt", weights_only=True)["val_loss"] == final
    # finished: a deleted log alone comes back too, the weights untouched
    (out / "train_log.csv").unlink()
    before = (out / "model.pt").read_bytes()
    assert cli("train", *base, "--out", str(out)) == 0
    assert pd.read_csv(out / "train_log.csv")["step"].tolist() == list(range(1, 15))
    assert (out / "model.pt").read_bytes() == before


def test_second_trainer_of_a_directory_fails_at_once(manifest: Path, tmp_path: Path) -> None:
    """A live trainer holds the directory: a second one fails naming the directory and the other PID;
    once the holder is killed (kill -9: its lock is stale), training proceeds."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "m"
    src = Path(__file__).resolve().parents[1] / "src"
    code = ("import sys, time; from alchemy_mbrl.io import exclusive_lock\n"
            f"with exclusive_lock({str(out / '.train.lock')!r}, 'x'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], env={"PYTHONPATH": str(src)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        cfg = write_config(tmp_path / "c.yaml", steps=2, batch_size=2)
        base = ["--config", str(cfg), "--data", str(manifest), "--no-progress", "--out", str(out)]
        with pytest.raises(OSError, match=rf"model directory {out}.*PID {holder.pid}\b"):
            cli("train", *base)
        assert not (out / "checkpoint.pt").exists()
        from alchemy_mbrl.cli import main

        assert main(["train", *base]) == 2  # the CLI: a one-line error, exit status 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert cli("train", *base) == 0  # the dead holder's lock is taken over
    assert (out / "model.pt").exists()
