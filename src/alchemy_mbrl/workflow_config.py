"""Checks of the Snakemake workflow's config that a JSON schema cannot express.

The Snakefile calls :func:`check_config`: the config against ``workflow/schemas/config.schema.yaml`` (which
also fills the schema's defaults), then :func:`validate_workflow_config`, so that everything a job would later
reject fails when the workflow loads, before any job runs, with an error naming the config files and the key:

* strict integers: JSON Schema's ``integer`` accepts ``2.0``, which later becomes a wildcard
  ``budget-2.0`` or a float seed; every key the schema types as an integer must be a YAML integer;
* ``train.threads``, ``train.mem_mb``, ``evaluate.threads``, ``evaluate.mem_mb``: refused, naming where
  threads and memory are set now (the rules and the profiles);
* cross-field rules: ``data.validation_shards < data.shards``, the architectures the HPO and the
  evaluation plan with are trained, ``evaluate.chunks <= evaluate.episodes`` (and the same for each
  of ``optimal_agents``), at least two validation episodes for ``model-eval``'s standard error;
* ``train.options`` and ``train.architecture_options``: resolved through the package's own
  training config (:func:`alchemy_mbrl.model.config.resolve_config`) for every architecture;
* ``hpo.space``: through the HPO's own :class:`alchemy_mbrl.hpo.SearchSpace` (bounds in order,
  positive lower bounds on a log scale, no negative ``temperature``/``c1``);
* the config files themselves (``config_files``: the Snakefile passes ``workflow.configfiles``), read
  by :func:`alchemy_mbrl.io.read_yaml`: a key given twice, NaN/infinity, an integer beyond 64 bits are
  errors naming the file and the key (Snakemake's own loader keeps the last of two keys silently);
* every value of the merged config: finite numbers, integers within 64 bits, seeds within the range of
  the generator that takes them (``hpo.seed``: scikit-optimize's 32-bit ``RandomState``).
* ``train.seeds`` and ``train.controls`` (:func:`trained_models`): every key of ``train.seeds`` names a trained
  architecture or a control, each list holds distinct seeds and includes the top-level ``seed`` (whose model
  keeps ``models/<arch>/``); a control's name is not an architecture's, and its options resolve through the
  training config; ``evaluate.long_budgets`` shares no budget with ``evaluate.budgets``;
* ``planner``: the readings of Algorithm 1 and the reward scale, through the planner's own
  :class:`alchemy_mbrl.planner.params.PlannerParams` (the one home of their names and ranges); only
  :data:`PLANNER_KEYS` may be set here (the HPO tunes ``temperature, c1, c2, k``, ``hpo.gamma`` sets
  gamma). :func:`planner_settings` gives the ``evaluate --param KEY=VALUE`` arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alchemy_mbrl.planner.params import READINGS

__all__ = ["validate_workflow_config", "train_overrides", "strict_integer_errors", "planner_settings", "PLANNER_KEYS",
           "TrainedModel", "trained_models", "model_overrides"]

#: Keys that moved out of the config's ``train`` and ``evaluate`` sections into the rules and profiles: the
#: schema still names them so that :func:`validate_workflow_config` refuses them with a message saying where.
MOVED_RESOURCES = ("threads", "mem_mb")

#: Keys of the workflow config's ``planner`` mapping: the fields of PlannerParams that no HPO tunes.
PLANNER_KEYS = ("reward_scale", "q_normalisation", *READINGS)


def planner_settings(config: dict[str, Any]) -> list[str]:
    """``KEY=VALUE`` of the config's ``planner`` mapping, sorted by key (each becomes ``evaluate --param``);
    empty when the mapping is (the package's defaults)."""
    return [f"{k}={v}" for k, v in sorted((config.get("planner") or {}).items())]


def _planner_problems(planner: Any) -> list[str]:
    if planner is None:
        return []
    if not isinstance(planner, dict):
        return [f"planner: must be a mapping of {', '.join(PLANNER_KEYS)}, got {planner!r}"]
    unknown = sorted(set(planner) - set(PLANNER_KEYS))
    if unknown:
        return [f"planner.{unknown[0]}: not a planner setting of the workflow; expected one of {', '.join(PLANNER_KEYS)}"]
    from alchemy_mbrl.planner.params import PlannerParams

    for key in sorted(planner):  # each key alone, so that the message names the key at fault
        try:
            PlannerParams(**{key: planner[key]})
        except (ValueError, TypeError) as exc:
            return [f"planner.{key}: {exc}"]
    try:
        PlannerParams(**planner).with_settings(planner_settings({"planner": planner}))
    except (ValueError, TypeError) as exc:
        return [f"planner: {exc}"]
    return []


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            break
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _wants_integer(schema: dict[str, Any]) -> bool:
    t = schema.get("type")
    types = t if isinstance(t, list) else [t]
    return "integer" in types and "number" not in types


def strict_integer_errors(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
                          key: str = "") -> list[str]:
    """Keys (dotted, with ``[i]`` for list items) whose schema says integer but whose value is a float."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    errors: list[str] = []
    if _wants_integer(schema) and (isinstance(value, float) or isinstance(value, bool)):
        errors.append(f"{key or '(top level)'}: must be an integer, got {value!r}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None:
                errors += strict_integer_errors(v, sub, root, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += strict_integer_errors(v, schema["items"], root, f"{key}[{i}]")
    return errors


def train_overrides(config: dict[str, Any], arch: str) -> dict[str, Any]:
    """The ``alchemy-mbrl train --config`` overrides of architecture ``arch`` (what the workflow writes
    to ``results/train_configs/{arch}.yaml``): steps, batch size, seed, time cap, then
    ``train.options``, then ``train.architecture_options.{arch}``."""
    t = config["train"]
    cfg = {"steps": t["steps"], "batch_size": t["batch_size"], "seed": config["seed"], "max_seconds": t["max_seconds"]}
    cfg.update(t.get("options") or {})
    cfg.update((t.get("architecture_options") or {}).get(arch) or {})
    return cfg


#: A control's name (``train.controls``) and a ``train.seeds`` key: lower case, digits, underscores (no '-',
#: which separates the parts of a model's directory name).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
#: The wildcard of the part of an extra model's directory name after ``<arch>-`` (common.smk, Snakefile).
VARIANT_PATTERN = r"seed-\d+|[a-z][a-z0-9_]*(-seed-\d+)?"


@dataclass(frozen=True)
class TrainedModel:
    """One world model the workflow trains: Table 2's ``row`` (an architecture, or a control's name), its
    architecture, training seed and control (None: the architecture's own options). ``name`` is its directory
    under ``models/``: the architecture for the top-level seed (the path of a run without seeds or controls),
    else ``<arch>-seed-<s>``, ``<arch>-<control>`` or ``<arch>-<control>-seed-<s>``."""

    row: str
    arch: str
    seed: int
    control: str | None
    name: str

    @property
    def variant(self) -> str:
        """The part of ``name`` after ``<arch>-`` ('' for the architecture's own model)."""
        return self.name[len(self.arch) + 1:]


def trained_models(config: dict[str, Any]) -> list[TrainedModel]:
    """Every model of a (validated) config, row by row (architectures, then controls), the top-level seed first."""
    t, default = config["train"], config["seed"]
    seeds, controls = t.get("seeds") or {}, t.get("controls") or {}
    rows = [(a, a, None) for a in t["architectures"]] + [(c, spec["architecture"], c) for c, spec in controls.items()]
    out = []
    for row, arch, control in rows:
        listed = list(seeds.get(row) or [default])
        for seed in [default, *(s for s in listed if s != default)]:
            parts = [p for p in (control, None if seed == default else f"seed-{seed}") if p]
            out.append(TrainedModel(row, arch, seed, control, "-".join([arch, *parts])))
    return out


def model_overrides(config: dict[str, Any], model: TrainedModel) -> dict[str, Any]:
    """The ``train --config`` overrides of ``model``: :func:`train_overrides` of its architecture, then its
    control's options, then its seed (the same as :func:`train_overrides` for the architecture's own model)."""
    cfg = train_overrides(config, model.arch)
    if model.control is not None:
        cfg.update(config["train"]["controls"][model.control].get("options") or {})
    cfg["seed"] = model.seed
    return cfg


def _model_problems(config: dict[str, Any]) -> list[str]:
    """``train.seeds``, ``train.controls`` and ``evaluate.long_budgets`` (module docstring)."""
    from alchemy_mbrl.model.config import ARCHITECTURES

    t, default = config["train"], config["seed"]
    archs = list(t["architectures"])
    seeds, controls = t.get("seeds") or {}, t.get("controls") or {}
    problems = []
    for name, spec in controls.items():
        if not NAME_PATTERN.fullmatch(str(name)):
            problems.append(f"train.controls.{name}: a control's name takes lower-case letters, digits and '_', "
                            "starting with a letter")
        elif name in ARCHITECTURES or name in ("bayes", "seed"):
            problems.append(f"train.controls.{name}: the name of an architecture or of another row; name the "
                            "control after what it changes (e.g. no_final_linear_lr)")
        if not isinstance(spec, dict) or spec.get("architecture") not in ARCHITECTURES:
            problems.append(f"train.controls.{name}.architecture: one of {', '.join(ARCHITECTURES)}")
    for row, listed in seeds.items():
        if row not in archs and row not in controls:
            problems.append(f"train.seeds.{row}: not a trained architecture or a control (train.architectures: "
                            f"{archs}; train.controls: {list(controls)})")
            continue
        if not isinstance(listed, list) or not listed:
            problems.append(f"train.seeds.{row}: a list of training seeds")
            continue
        dup = sorted({s for s in listed if listed.count(s) > 1})
        if dup:
            problems.append(f"train.seeds.{row}: seed {dup[0]} given twice (each seed trains one model)")
        if default not in listed:
            problems.append(f"train.seeds.{row}: {listed} must include the top-level seed ({default}): its model "
                            f"(models/<arch>/) is the row's main model, the one the planner rows use; e.g. "
                            f"[{default}, {', '.join(str(s) for s in listed if s != default)}]")
        for s in listed:
            if isinstance(s, int) and not isinstance(s, bool) and not 0 <= s < 2**63:
                problems.append(f"train.seeds.{row}: {s} is outside 0..{2**63 - 1} (torch's seed)")
    ev = config["evaluate"]
    both = sorted(set(ev.get("long_budgets") or []) & set(ev["budgets"]))
    if both:
        problems.append(f"evaluate.long_budgets: {both} already in evaluate.budgets (the default target plays them)")
    return problems


def _seed_errors(config: dict[str, Any]) -> list[str]:
    """Seeds beyond the range of the generator that takes them (each job would refuse them)."""
    errors: list[str] = []
    hpo = config.get("hpo") or {}
    limits = [("seed", config.get("seed"), 2**63, "the dataset's shards store it as a 64-bit integer"),
              ("hpo.seed", hpo.get("seed"), 2**32, "scikit-optimize's RandomState takes 32 bits")]
    last_eval = None
    if isinstance(hpo.get("eval_seed"), int):
        last_eval = hpo["eval_seed"] + 1000 * max(int(hpo.get("rounds", 1)) - 1, 0) + max(
            int(hpo.get("points_per_round", 1)) - 1, 0)
    limits.append(("hpo.eval_seed", last_eval, 2**64, "point p of round r evaluates eval_seed + 1000 r + p"))
    for section in ("evaluate", "baselines"):
        limits.append((f"{section}.seed", (config.get(section) or {}).get("seed"), 2**64, "evaluate --seed"))
    for key, value, limit, why in limits:
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < limit:
            errors.append(f"{key}: {value} is outside 0..{limit - 1} ({why})")
    return errors


def check_config(config: dict[str, Any], schema: str | Path, config_files: list[str | Path],
                 names: str | None = None, skip: bool = False) -> None:
    """Every check of the workflow's config before it plans a job, as the Snakefile runs it: the JSON schema
    (Snakemake's ``validate``, which fills the schema's defaults into ``config``), then
    :func:`validate_workflow_config`. Raise ``ValueError`` starting with ``names`` (the config files the user
    named; default: ``config_files``) and naming the key.

    ``skip`` (the Snakefile passes ``workflow.modifier.skip_validation``) skips both, as Snakemake's
    ``skip_validation`` module modifier asks of every ``validate`` call: ``validate`` finds the modifier only
    when called from the Snakefile itself, so the Snakefile hands it over."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    if skip:
        return
    names = names or ", ".join(map(str, config_files)) or "config/config.yaml"
    try:
        validate(config, str(schema))
    except WorkflowError as exc:
        raise ValueError(f"{names}: {exc}") from None
    try:
        validate_workflow_config(config, schema, config_files=config_files)
    except ValueError as exc:
        raise ValueError(f"{names}: config validation failed: {str(exc).removeprefix('config: ')}") from None


def validate_workflow_config(config: dict[str, Any], schema: dict[str, Any] | str | Path | None = None,
                             config_files: list[str | Path] | None = None) -> None:
    """Raise ``ValueError`` (``config: KEY: problem``) for the first rule of this module's docstring that
    ``config`` breaks. ``schema`` (the workflow's schema, a mapping or a YAML path) enables the
    strict-integer check; ``config_files`` (the YAML files the config was merged from) the file checks."""
    from alchemy_mbrl.io import read_yaml, value_errors

    problems: list[str] = []
    for f in config_files or []:
        read_yaml(f, "workflow config file")  # ValueError naming the file and the key
    problems += value_errors(config)
    if problems:
        raise ValueError("config: " + "; ".join(problems[:5]))
    if schema is not None:
        if not isinstance(schema, dict):
            import yaml

            schema = yaml.safe_load(Path(schema).read_text())
        problems += strict_integer_errors(config, schema)
    if problems:
        raise ValueError("config: " + "; ".join(problems[:5]))

    data, train, hpo, ev = config["data"], config["train"], config["hpo"], config["evaluate"]
    for section in ("train", "evaluate"):
        for key in MOVED_RESOURCES:
            if key in (config.get(section) or {}):
                problems.append(f"{section}.{key}: no longer a config key (the config keeps only what changes the "
                                "science); delete it: threads and memory are set by the rules (memory: common.smk's "
                                "mem_mb, doubled on each retry) and the profiles' set-threads (docs/workflow.md, "
                                "\"Resources\")")
    if data["validation_shards"] >= data["shards"]:
        problems.append(f"data.validation_shards ({data['validation_shards']}) must be smaller than data.shards "
                        f"({data['shards']}): some shards must remain for training")
    archs = list(train["architectures"])
    if not archs:
        problems.append("train.architectures: must list at least one architecture")
    if hpo["simulator"] == "learned" and hpo["architecture"] not in archs:
        problems.append(f"hpo.architecture: '{hpo['architecture']}' is not in train.architectures {archs}")
    if ev["architecture"] not in archs:
        problems.append(f"evaluate.architecture: '{ev['architecture']}' is not in train.architectures {archs}")
    n_eval = train.get("eval_max_episodes")
    if n_eval is not None and n_eval < 2:
        problems.append(f"train.eval_max_episodes: must be null or >= 2 (model-eval's standard error needs two "
                        f"episodes), got {n_eval}")
    if ev["chunks"] > ev["episodes"]:
        problems.append(f"evaluate.chunks ({ev['chunks']}) must not exceed evaluate.episodes ({ev['episodes']}): "
                        "a chunk would be empty")
    for agent, run in (config.get("optimal_agents") or {}).items():
        if run["episodes"] > 0 and run["chunks"] > run["episodes"]:
            problems.append(f"optimal_agents.{agent}.chunks ({run['chunks']}) must not exceed "
                            f"optimal_agents.{agent}.episodes ({run['episodes']}): a chunk would be empty")
    if hpo["initial_points"] < 1:
        problems.append("hpo.initial_points: must be >= 1")
    problems += _seed_errors(config)
    problems += _model_problems(config)

    from alchemy_mbrl.model.config import ARCHITECTURES, resolve_config

    for name, opts in (("train.options", train.get("options")),
                       *((f"train.architecture_options.{a}", o) for a, o in (train.get("architecture_options") or {}).items())):
        if opts is not None and not isinstance(opts, dict):
            problems.append(f"{name}: must be a mapping of train --config keys")
    for name, spec in (train.get("controls") or {}).items():
        if isinstance(spec, dict) and spec.get("options") is not None and not isinstance(spec["options"], dict):
            problems.append(f"train.controls.{name}.options: must be a mapping of train --config keys")
    if not problems:
        for arch in archs:
            if arch not in ARCHITECTURES:
                continue
            where = "train.options" + (f" / train.architecture_options.{arch}"
                                       if arch in (train.get("architecture_options") or {}) else "")
            try:
                resolve_config(arch, train_overrides(config, arch))
            except (ValueError, TypeError) as exc:
                problems.append(f"{where} (architecture {arch}): {exc}")
                break
    if not problems:
        for model in trained_models(config):
            if model.control is None:
                continue
            try:
                resolve_config(model.arch, model_overrides(config, model))
            except (ValueError, TypeError) as exc:
                problems.append(f"train.controls.{model.control}.options (architecture {model.arch}): {exc}")
                break

    from alchemy_mbrl.hpo import SearchSpace

    try:
        SearchSpace.from_dict({**hpo["space"], "gamma": hpo["gamma"]})
    except (ValueError, TypeError) as exc:
        problems.append(f"hpo.space: {exc}")
    problems += _planner_problems(config.get("planner"))
    if problems:
        raise ValueError("config: " + "; ".join(problems))
