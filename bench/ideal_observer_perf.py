"""Where a first-trial search of the ideal observer spends its time, by Numba kernel (Linux ``perf``).

    PYTHONPATH=src ALCHEMY_THREADS=1 python bench/ideal_observer_perf.py [--seed 3] [--episode 0]
        [--potions 10] [--frequency 499]

Numba's compiled functions have no symbols that ``perf`` can see. This script compiles the search
on a tiny problem first, writes ``/tmp/perf-<pid>.map`` (the JIT map format ``perf`` reads: start,
size, name) with the address of every compiled kernel of :mod:`alchemy_mbrl.ideal_observer` (its
``kernels`` and ``expectimax`` modules), then
samples itself with ``perf record -p <pid>`` while it searches one first trial (``episode_setup``'s
stones, posterior after the first observation, first ``--potions`` potions; ``TrialSearch.best``,
as the agent asks), and prints ``perf report``'s shares by symbol. Kernels inlined into others
(``inline="always"``) are counted in their caller; a kernel's size in the map is the gap to the next
one, so a share may spill into a neighbour. Needs ``perf`` (Debian: ``linux-perf``) and permission
to sample (``kernel.perf_event_paranoid`` <= 1, or root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_perf_map(*modules) -> int:
    """Write ``/tmp/perf-<pid>.map`` for the compiled overloads of the ``modules``' Numba functions."""
    addrs = []
    for module, name in ((m, n) for m in modules for n in dir(m)):
        f = getattr(module, name)
        overloads = list(getattr(f, "overloads", {}).values())
        for k, cres in enumerate(overloads):
            try:
                a = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            except Exception:  # not compiled to a callable symbol (e.g. only inlined)
                continue
            if a:
                addrs.append((a, name if len(overloads) == 1 else f"{name}#{k}"))  # #k: k-th signature
    addrs.sort()
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as fh:
        for i, (a, name) in enumerate(addrs):
            size = min(addrs[i + 1][0] - a if i + 1 < len(addrs) else 1 << 16, 1 << 20)
            fh.write(f"{a:x} {size:x} {name}\n")
    return len(addrs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--episode", type=int, default=0)
    ap.add_argument("--potions", type=int, default=10)
    ap.add_argument("--frequency", type=int, default=499, help="samples per second")
    args = ap.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf is not installed (Debian: apt-get install linux-perf)")

    from alchemy_mbrl import ideal_observer as io
    from alchemy_mbrl.ideal_observer import expectimax, kernels
    from alchemy_mbrl.bayes import initial_posterior
    from alchemy_mbrl.env.alchemy import AlchemyEnv
    from alchemy_mbrl.evaluate import episode_setup

    chem, items, _ = episode_setup(args.seed, np.array([args.episode]))
    obs = AlchemyEnv(1, seed=0).reset(chem, items).observation_codes
    post = initial_posterior(obs)
    stones, colours, _ = io.observed_items(obs[0])
    warm = io.TrialSearch(post[0])  # compile every kernel first
    warm.best(warm.root, stones, np.bincount(colours[:2], minlength=6))
    mapped = write_perf_map(kernels, expectimax)

    data = os.path.join(tempfile.mkdtemp(), "perf.data")
    rec = subprocess.Popen(["perf", "record", "-F", str(args.frequency), "-p", str(os.getpid()), "-o", data],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let perf attach
    t = time.perf_counter()
    s = io.TrialSearch(post[0])
    s.best(s.root, stones, np.bincount(colours[: args.potions], minlength=6))
    seconds = time.perf_counter() - t
    rec.send_signal(signal.SIGINT)
    rec.wait()
    print(json.dumps({"seed": args.seed, "episode": args.episode, "potions": args.potions, "seconds": seconds,
                      "states": s.states, "beliefs": s.beliefs, "kernels_mapped": mapped}))
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "sym"], capture_output=True, text=True)
    lines = [x for x in rep.stdout.splitlines() if x.strip() and not x.startswith("#")]
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
