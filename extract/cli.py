"""The ``probekit`` command: one subcommand per pipeline stage (and per Make target).

    probekit extract  --config configs/demo.toml      # GPU box: encoder -> feature cache
    probekit classify --config configs/demo.toml      # laptop: sklearn on the cache
    probekit report   --config configs/demo.toml      # laptop: plots, HTML page, W&B

Every subcommand takes ``--config``, ``--set section.key=value`` (repeatable), ``--data``
and ``--artifacts``. Heavy libraries are imported inside the handlers, so classify and
report never load torch. A user error prints one line and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from extract.config import ProbekitError, load_config

logger = logging.getLogger("probekit")

DEFAULT_CONFIG = "configs/demo.toml"


def _extract(cfg) -> None:
    try:
        import datasets  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ProbekitError(
            f"extract needs torch, transformers and datasets ({e.name} is missing): "
            "pip install -e '.[extract]' (make extract installs them)."
        ) from None
    from extract.encode import run_extract

    run_extract(cfg)


def _classify(cfg) -> None:
    from classify.train import run_classify

    run_classify(cfg)


def _report(cfg) -> None:
    from analysis.report import build_report

    build_report(cfg)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probekit", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors too")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("extract", _extract, "run the frozen encoder over every split and cache the features"),
        ("classify", _classify, "train the classifiers on the cached features; write metrics.json"),
        ("report", _report, "UMAP, confusion reports, per-label ROC-AUC, HTML page and W&B"),
    ):
        p = sub.add_parser(name, help=help_, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="TOML preset")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one setting, e.g. --set classify.logreg_C=0.5 (repeatable)")
        p.add_argument("--data", help="data directory of a local-files preset (sets data.path)")
        p.add_argument("--artifacts", help="output root (sets run.artifacts)")
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "datasets", "huggingface_hub", "urllib3", "numba", "matplotlib", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data!r}")
    if args.artifacts:
        overrides.append(f"run.artifacts={args.artifacts!r}")
    try:
        cfg = load_config(args.config, overrides)
        args.func(cfg)
    except (ProbekitError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"probekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"probekit {args.command}: interrupted; finished outputs are kept, partial ones discarded.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
