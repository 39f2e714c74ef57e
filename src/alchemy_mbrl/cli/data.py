"""``alchemy-mbrl generate`` (one HDF5 shard), ``data manifest`` and ``data inspect``: :mod:`alchemy_mbrl.data.shards`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="write one HDF5 shard of uniform-random episodes")
    g.add_argument("--shard", type=int, required=True, help="shard index I (0-based)")
    g.add_argument("--num-shards", type=int, required=True, help="number of shards M of the dataset")
    g.add_argument("--episodes", type=int, required=True, help="episodes in this shard")
    g.add_argument("--seed", type=int, required=True, help="global dataset seed (the shard's seed derives from it and I)")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--compression", type=int, default=4, choices=range(10), metavar="0-9", help="gzip level (default 4)")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=cmd_generate)

    data = sub.add_parser("data", help="dataset utilities (manifest, inspect)")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    m = dsub.add_parser("manifest", help="write a JSON manifest of shards with episode counts and SHA-256")
    m.add_argument("shards", nargs="+", type=Path)
    m.add_argument("--validation", type=int, required=True, help="the last K shards are held out for validation")
    m.add_argument("--out", type=Path, required=True)
    m.set_defaults(func=cmd_manifest)
    i = dsub.add_parser("inspect", help="validate shards (or a manifest's shards, re-checking SHA-256) and print a summary")
    i.add_argument("paths", nargs="+", type=Path, help="shard files or a manifest .json")
    i.set_defaults(func=cmd_inspect)


def cmd_generate(args: argparse.Namespace) -> int:
    from alchemy_mbrl.data.shards import write_shard
    from alchemy_mbrl.io import command_outputs

    t0 = time.perf_counter()
    with command_outputs(outputs=[args.out]):
        write_shard(args.out, shard=args.shard, num_shards=args.num_shards, episodes=args.episodes, seed=args.seed,
                    compression_level=args.compression, progress=not args.no_progress)
    dt = time.perf_counter() - t0
    print(f"wrote {args.out}: {args.episodes} episodes in {dt:.1f} s ({args.episodes / dt:.0f} episodes/s)")
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from alchemy_mbrl.data.shards import write_manifest
    from alchemy_mbrl.io import command_outputs

    with command_outputs(inputs=[(p, "shard") for p in args.shards], outputs=[args.out]):
        m = write_manifest(args.out, list(args.shards), args.validation)
    print(f"wrote {args.out}: {len(m['shards'])} shards, {m['episodes']['train']} training and "
          f"{m['episodes']['validation']} validation episodes")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from alchemy_mbrl.cli._paths import manifest_inputs
    from alchemy_mbrl.data.shards import inspect_shards
    from alchemy_mbrl.io import check_paths

    check_paths(inputs=[q for p in args.paths for q in (manifest_inputs(p) if p.suffix == ".json" else [(p, "shard")])])
    reports = inspect_shards(args.paths)
    for r in reports:
        print(f"{r.path}: {r.episodes} episodes, seed {r.seed}, shard {r.shard}/{r.num_shards}, split {r.split}: ok")
    print(f"{len(reports)} shards, {sum(r.episodes for r in reports)} episodes: all readable")
    return 0
