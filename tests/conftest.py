"""Shared fixtures: the golden traces (when present) and small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("ALCHEMY_GOLDEN_DIR", REPO.parent / "shared" / "alchemy" / "golden"))
TRACES = Path(os.environ.get("ALCHEMY_TRACES", GOLDEN_DIR / "traces.npz"))
CHEMISTRY_FREQUENCIES = GOLDEN_DIR / "chemistry_frequencies.json"


@pytest.fixture(scope="session")
def golden_traces_path() -> Path:
    if not TRACES.exists():
        pytest.skip(f"reference traces not found at {TRACES} (set ALCHEMY_TRACES)")
    return TRACES


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of 3 shards x 64 uniform-random episodes (last shard = validation)."""
    from alchemy_mbrl.data.shards import write_manifest, write_shard

    d = tmp_path_factory.mktemp("data")
    shards = [write_shard(d / f"shard-{i}.h5", shard=i, num_shards=3, episodes=64, seed=123, progress=False) for i in range(3)]
    write_manifest(d / "manifest.json", shards, validation=1)
    return d / "manifest.json"


@pytest.fixture
def torch_one_thread() -> object:
    """One intra-op torch thread: the suite runs on small shared machines, where more oversubscribe."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: Tests outside the fast lane (``pytest -m "not slow"``, docs/testing.md): each took 3.5 s or more on the
#: 2-core development machine under load (``--durations``, 2026-12-06); a name without ``[...]`` marks
#: every case of a parametrised test. Marked here, in one list, beside the tests marked
#: ``@pytest.mark.slow`` in their files (the end-to-end workflow runs).
SLOW_TESTS = frozenset({
    "tests/test_bad_input.py::test_bad_input_gives_one_clear_line[train-data-is-shard]",  # 10 s
    "tests/test_bad_input.py::test_generate_on_a_full_disk_is_a_clear_error",  # 8 s
    "tests/test_baselines.py::test_planner_returns_are_pinned",  # 32 s
    "tests/test_bayes.py::test_a_misspecified_prior_predicts_worse",  # 9 s
    "tests/test_bayes.py::test_bayes_entropy_command",  # 11 s
    "tests/test_bayes.py::test_posterior_equals_brute_force",  # 49 s
    "tests/test_bayes.py::test_simulator_children_posteriors_and_outcomes_are_consistent",  # 5 s
    "tests/test_bayes.py::test_trial_start_part_is_at_least_the_item_entropy",  # 5 s
    "tests/test_bayes.py::test_true_chemistry_in_posterior_on_reference_traces",  # 4 s
    "tests/test_bayes.py::test_true_chemistry_keeps_nonzero_posterior",  # 10 s
    "tests/test_env_exactness.py::test_replay_cli_on_golden_traces",  # 6 s
    "tests/test_env_invariants.py::test_episode_invariants",  # 5 s
    "tests/test_episodes_file.py::test_chunks_of_a_file_merge_into_the_unchunked_run",  # 13 s
    "tests/test_episodes_file.py::test_round_trip_plays_the_seeds_episodes",  # 9 s
    "tests/test_gpu_check.py::test_gpu_check_on_cpu_passes_and_prints_one_table",  # 51 s
    "tests/test_hpo.py::test_best_and_history",  # 12 s
    "tests/test_hpo.py::test_cli_rounds",  # 13 s
    "tests/test_hpo.py::test_deterministic_given_seed",  # 25 s
    "tests/test_hpo.py::test_gp_rounds_improve_on_random_start",  # 60 s
    "tests/test_hpo.py::test_points_are_valid_planner_params",  # 4 s
    "tests/test_hpo.py::test_resume_from_saved_state_equals_uninterrupted",  # 35 s
    "tests/test_ideal_observer.py::test_expectimax_equals_brute_force_on_small_posteriors",  # 129 s
    "tests/test_ideal_observer.py::test_ideal_observer_never_beats_the_search_oracle_on_average",  # compiles the search when run alone
    "tests/test_ideal_observer.py::test_ideal_observer_plays_a_whole_episode",  # 6 s
    "tests/test_ideal_observer.py::test_search_oracle_cli_chunks_and_episodes_file",  # compiles the search when run alone
    "tests/test_ideal_observer.py::test_search_oracle_is_the_best_action_sequence",  # compiles the search when run alone
    "tests/test_ideal_observer_run_plot.py::test_figure_of_the_committed_run",  # 8 s
    "tests/test_model_simulator.py::test_whole_search_with_reused_path_slots_equals_rewriting_them",  # 10 s
    "tests/test_model_train.py::test_cli_is_registered_and_fast_to_import",  # 10 s
    "tests/test_model_train.py::test_each_architecture_trains_and_loads",  # 8 s
    "tests/test_model_train.py::test_gradient_accumulation_matches_full_batch",  # 4 s
    "tests/test_model_train.py::test_model_eval_cli_and_floor_on_held_out",  # 51 s
    "tests/test_model_train.py::test_overfitting_drives_loss_and_chemistry_part_down",  # 57 s
    "tests/test_model_train.py::test_resume_gives_identical_weights",  # 18 s
    "tests/test_model_train.py::test_resume_restores_rng_state_mapped_off_cpu",  # 16 s
    "tests/test_model_train.py::test_resume_with_cosine_schedule_is_exact",  # 23 s
    "tests/test_model_train.py::test_second_trainer_of_a_directory_fails_at_once",  # 4 s
    "tests/test_model_train.py::test_training_log_survives_snakemake_deleting_outputs",  # 29 s
    "tests/test_planner_evaluate.py::test_chunked_evaluation_merges_bit_identically",  # 12 s
    "tests/test_planner_numba.py::test_compiled_oracle_search_equals_numpy",  # 5 s
    "tests/test_planner_oracle.py::test_oracle_planner_score_rises_with_budget",  # 23 s
    "tests/test_planner_oracle.py::test_whole_episodes_batched_equal_one_at_a_time",  # 7 s
    "tests/test_report.py::test_plots",  # 15 s
    "tests/test_report.py::test_plots_with_scale_floor_and_best_trial",  # 13 s
    "tests/test_workflow_run.py::test_missing_model_fails_with_a_message_naming_it",  # 24 s
    "tests/test_workflow_static.py::test_cpu_config_builds_its_dag",  # 8 s
    "tests/test_workflow_static.py::test_extra_models_keep_the_default_models_paths_and_configs",  # 12 s (a dry run)
    "tests/test_workflow_static.py::test_lint_is_clean",  # 15 s
    "tests/test_workflow_static.py::test_local_profile_limits_gpu_jobs",  # 4 s
    "tests/test_workflow_static.py::test_optimal_agents_play_the_baselines_episodes",  # 18 s
    "tests/test_workflow_static.py::test_paper_config_builds_full_dag",  # 11 s
    "tests/test_workflow_static.py::test_paper_dry_run_plans_only_paper_outputs",  # 5 s
    "tests/test_workflow_static.py::test_snakemake_rejects_bad_config_before_any_job",  # 7 s (a dry run each)
    "tests/test_workflow_static.py::test_small_configs_build_every_rule",  # 7 s
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SLOW_TESTS or item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
