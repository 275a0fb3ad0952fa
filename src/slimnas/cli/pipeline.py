"""``slimnas run | search | export | evaluate | report``: the pipeline up to one stage."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from slimnas.cli.set_option import add_set_option
from slimnas.errors import ConfigError

# The pipeline stages each command runs (earlier stages are reused when finished).
PIPELINE_COMMANDS = {
    "run": ("supernet", "search", "export", "retrain", "report"),
    "search": ("supernet", "search"),
    "export": ("supernet", "search", "export"),
    "evaluate": ("supernet", "search", "retrain"),
    "report": ("report",),
}


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Run the stages of ``args.command`` on the config ``args.config``; returns the exit status."""
    from slimnas.config import PipelineConfig, load_config
    from slimnas.pipeline import Pipeline, StageStopped
    from slimnas.train.distributed import init_from_env

    config = load_config(args.config, args.set, PipelineConfig)
    stages = PIPELINE_COMMANDS[args.command]
    # Every command but run continues the run in run.dir when there is one.
    resume = args.resume or args.command != "run"
    if args.command == "report" and not (Path(config.run.dir) / "config.json").exists():
        raise ConfigError(f"run.dir {config.run.dir} holds no run to report; slimnas run first")
    init_from_env()
    logging.getLogger("slimnas.pipeline").setLevel(logging.INFO)  # say what each stage does
    pipeline = Pipeline(config, resume=resume)
    started = time.perf_counter()
    try:
        run_dir = pipeline.run(stages)
    except StageStopped as stop:  # a max_steps the user set: not an error
        print(f"{args.command}: {stop}")
        return 0
    print(f"{args.command}: done in {time.perf_counter() - started:.0f} s -> {run_dir}")
    if "report" in stages:
        print(f"report: {run_dir / 'report.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the pipeline commands to the subcommands ``sub``."""
    helps = {
        "run": "search and retrain end to end from a TOML config (docs/pipeline.md)",
        "search": "train the supernet and run the searches of a run config",
        "export": "export the found archs (supernet weights) as plain models and ONNX",
        "evaluate": "retrain every found arch per seed and test it once",
        "report": "write report.md and its figures from a run's results",
    }
    for name, text in helps.items():
        command = sub.add_parser(name, help=text)
        command.add_argument("config", help="TOML file (see docs/pipeline.md)")
        add_set_option(command, "search.budgets=macs<=50%%")
        command.add_argument("--resume", action="store_true", help="continue the run in run.dir")
        command.set_defaults(run=cmd_pipeline)
