"""The ``probekit bench-finetune`` subcommand: its parser and handler (registered by probekit.cli).

    python -m probekit.stages.extract.bench.finetune_cli --config configs/goemotions-local.toml --data DIR
"""

from __future__ import annotations

import sys

NAME = "bench-finetune"
HELP = "time fine-tuning against Hugging Face's Trainer (one epoch each, interleaved turns)"


def main(cfg) -> None:
    """The handler: cfg is the loaded Config (run under the CLI's one-line error handling)."""
    from probekit.stages.extract.bench.finetune import run_bench_finetune

    run_bench_finetune(cfg)


def _standalone(argv: list[str]) -> int:
    """Until probekit.cli registers the subcommand: the same options and one-line errors."""
    import argparse
    import logging

    from probekit.core.config import load_config
    from probekit.core.errors import ProbekitError

    p = argparse.ArgumentParser(prog=f"probekit {NAME}", description=HELP)
    p.add_argument("--config", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--data")
    p.add_argument("--artifacts")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data!r}")
    if args.artifacts:
        overrides.append(f"run.artifacts={args.artifacts!r}")
    try:
        main(load_config(args.config, overrides))
    except ProbekitError as e:
        print(f"probekit {NAME}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_standalone(sys.argv[1:]))
