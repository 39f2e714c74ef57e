"""Simulators the planner can search with: oracle (true chemistry), learned (world model), bayes (exact posterior).

Each implements :class:`alchemy_mbrl.planner.simulator.Simulator`, the planner's interface to its models.
"""

from alchemy_mbrl.planner.simulator import Simulator

__all__ = ["SIMULATORS", "make_simulator"]

SIMULATORS = ("oracle", "learned", "bayes")


def make_simulator(name: str, *, model_dir: str | None = None, device: str | None = None) -> Simulator:
    """Build a simulator by name (``oracle``, ``learned``, ``bayes``); imports are lazy.

    ``learned`` needs ``model_dir`` (a directory written by ``alchemy-mbrl train``).
    """
    if name == "oracle":
        from alchemy_mbrl.simulators.oracle import OracleSimulator

        return OracleSimulator()
    if name == "learned":
        if model_dir is None:
            raise ValueError("the learned simulator needs --model DIR (a trained model directory)")
        from alchemy_mbrl.simulators.learned import LearnedSimulator

        return LearnedSimulator.load(model_dir, device=device)
    if name == "bayes":
        from alchemy_mbrl.simulators.bayes import BayesSimulator

        return BayesSimulator()
    raise ValueError(f"unknown simulator {name!r}; choose one of {', '.join(SIMULATORS)}")
