"""The ``probekit`` command: one subcommand per pipeline stage (and per Make target).

    probekit extract  --config configs/demo.toml      # GPU box: encoder -> feature cache
    probekit classify --config configs/demo.toml      # laptop: sklearn on the cache
    probekit report   --config configs/demo.toml      # laptop: plots, HTML page, W&B
    probekit search   --config configs/demo.toml      # laptop: classify settings grid, W&B runs
    probekit finetune --config configs/demo.toml      # GPU box: the encoder fine-tuned (then classify scores it)
    probekit predict  --run artifacts/demo --text "what a lovely surprise"
    probekit config   --config configs/demo.toml [--all]  # the resolved settings, as a preset
    probekit table    --run artifacts/demo              # the results table (Markdown) from metrics.json
    probekit bench-extract --config configs/goemotions-local.toml --data DIR
    probekit bench-finetune --config configs/goemotions-local.toml --data DIR

Every subcommand takes ``--config``, ``--set section.key=value`` (repeatable), ``--data``
and ``--artifacts``. Heavy libraries are imported inside the handlers, so classify and
report never load torch. A user error prints one line and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from probekit.core.config import load_config
from probekit.core.errors import ProbekitError, os_error
from probekit.core.runlock import run_lock

logger = logging.getLogger("probekit")

DEFAULT_CONFIG = "configs/demo.toml"


def _extract(cfg) -> None:
    _need_torch("extract")
    from probekit.core.runfolder import MANIFEST_NAME, features_dir
    from probekit.stages.extract.encode import run_extract

    manifest = features_dir(cfg.run_dir) / MANIFEST_NAME
    before = manifest.stat().st_mtime_ns if manifest.is_file() else None
    out = run_extract(cfg)
    if before is not None and before == manifest.stat().st_mtime_ns:
        # the cache was reused as it was: its W&B run was logged when it was built
        logger.info("extract: W&B: nothing new to log (the cache's run was logged when it was built)")
    elif cfg.report.wandb:
        from probekit.stages.analysis.wandb_log import log_extract

        log_extract(cfg, out)


def _need_torch(stage: str) -> None:
    try:
        import datasets  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ProbekitError(
            f"{stage} needs torch, transformers and datasets ({e.name} is missing): "
            "pip install -e '.[extract]' (make extract installs them)."
        ) from None


def _finetune(cfg) -> None:
    _need_torch("finetune")
    from probekit.stages.extract.finetune import run_finetune

    out = run_finetune(cfg)
    if cfg.report.wandb:
        from probekit.stages.analysis.wandb_log import log_finetune

        log_finetune(cfg, out)


def _classify(cfg) -> None:
    from probekit.stages.classify.train import run_classify

    out = run_classify(cfg)
    if cfg.report.wandb:
        from probekit.stages.analysis.wandb_evidence import log_classify

        log_classify(cfg, out)


def _search(cfg) -> None:
    from probekit.stages.classify.search import run_search

    run_search(cfg)


def _report(cfg) -> None:
    from probekit.stages.analysis.report import build_report

    build_report(cfg)


STAGES = {"extract": _extract, "finetune": _finetune, "classify": _classify, "report": _report}


def run_stage(command: str, cfg) -> None:
    """Run a pipeline stage as its subcommand does (its W&B logging included), without the lock or
    the error handling around it: the CLI's main and probekit.api add those."""
    STAGES[command](cfg)


def _bench_extract(cfg) -> None:
    from probekit.stages.extract.bench.run import run_bench

    run_bench(cfg)


def _bench_finetune(cfg) -> None:
    from probekit.stages.extract.bench.finetune_cli import main as run

    run(cfg)


def _predict(args) -> None:
    from probekit.run import format_rows, load_run, read_texts

    texts = read_texts(args.text, args.file, args.column)
    result = load_run(args.run).predict(texts, model=args.model)
    print(format_rows(texts, result, fmt=args.format))


def _config(args) -> None:
    """Print the resolved configuration as a preset; it writes nothing, so it takes no run lock."""
    from probekit.core.config_toml import to_toml

    print(to_toml(_load(args), show_advanced=args.all), end="")


def _table(args) -> None:
    from probekit.stages.analysis.table import print_table

    print(print_table(args.run))


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
        ("search", _search, "grid over classify settings on the cached features; each trial a W&B run"),
        ("finetune", _finetune, "fine-tune the encoder end to end into <run>/finetuned/; classify then scores it"),
        ("bench-extract", _bench_extract, "time extraction against the book's recipe and sentence-transformers"),
        ("bench-finetune", _bench_finetune, "time fine-tuning against HF Trainer (one epoch each, interleaved)"),
        ("config", _config, "print the resolved configuration as a preset (users' keys; --all: advanced too)"),
    ):
        p = sub.add_parser(name, help=help_, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="TOML preset")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one setting, e.g. --set classify.logreg.C=0.5 (repeatable)")
        p.add_argument("--data", help="data directory of a local-files preset (sets data.path)")
        p.add_argument("--artifacts", help="output root (sets run.artifacts)")
        if name in ("extract", "finetune", "bench-extract", "bench-finetune"):  # the commands that load a model
            p.add_argument("--trust-remote-code", action="store_true",
                           help="run Python code shipped with the model; only this flag allows it, never a config")
        p.set_defaults(func=func)
        if name == "config":
            p.add_argument("--all", action="store_true", help="print the advanced keys too")
            p.set_defaults(takes_args=True)
    p = sub.add_parser("predict", help="label new texts with a finished run's model (tuned thresholds applied)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="the run folder, e.g. artifacts/demo")
    p.add_argument("--text", action="append", help="a text to label (repeatable)")
    p.add_argument("--file", help="a text file (one text per line) or a csv/tsv file")
    p.add_argument("--column", help="the csv/tsv column holding the texts (default: text)")
    p.add_argument("--model", help="a model of the run (default: its best on validation)")
    p.add_argument("--format", choices=("table", "jsonl"), default="table")
    p.set_defaults(func=_predict, takes_args=True)
    p = sub.add_parser("table", help="print a finished run's results table (Markdown) from its metrics.json")
    p.add_argument("--run", required=True, help="the run folder, e.g. artifacts/goemotions-local")
    p.set_defaults(func=_table, takes_args=True)
    return parser


def _load(args):
    """The resolved Config of a stage subcommand's --config, --set, --data and --artifacts."""
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data!r}")
    if args.artifacts:
        overrides.append(f"run.artifacts={args.artifacts!r}")
    return load_config(args.config, overrides, trust_remote_code=getattr(args, "trust_remote_code", False))


def _one_line(e: BaseException) -> str:
    """The message on one line, whatever a library put in it."""
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "datasets", "huggingface_hub", "urllib3", "numba", "matplotlib", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if getattr(args, "takes_args", False):
            args.func(args)
        else:
            cfg = _load(args)
            with run_lock(cfg.run_dir, args.command):  # one writer per run folder
                args.func(cfg)
    except (ProbekitError, FileNotFoundError, OSError) as e:
        # A full disk, a read-only or forbidden folder anywhere is the user's to fix: one line.
        err = e if isinstance(e, (ProbekitError, FileNotFoundError)) else os_error(e)
        if err is None or args.debug:
            raise
        print(f"probekit {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"probekit {args.command}: interrupted; finished outputs are kept, partial ones discarded.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
