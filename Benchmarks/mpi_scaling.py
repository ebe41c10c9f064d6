#!/usr/bin/env python3
"""Steps per second of data-parallel training over MPI against threads, on one machine (issue 15).

For each model (the default MLP 784-256-128-10, and `--layers cnn`), three configurations train
the same global batches (batch 128, Adam, one epoch of the first --mlp-limit / --cnn-limit images,
by default 30000 and 12000: 196 and 79 steps, 5/6 of the images train):

    a  1 process  x 1 thread:   backprop train --epochs 1 --limit N --json --threads 1
    b  1 process  x 2 threads:  backprop train --epochs 1 --limit N --json --threads 2
    c  2 processes x 1 thread:  mpirun -np 2 backprop train --epochs 1 --limit N --json --threads 1

Each run prints one JSON object whose "steps" holds `count` (optimizer steps), `seconds` (time in
training steps only: forward, backward, the all-reduce and the optimizer; validation, data loading
and MPI's start-up excluded) and `all_reduce_seconds` (time inside the fused gradient all-reduce,
waiting for the slower process included). The configurations alternate in rounds (--rounds; the
order rotates each round, so that a busy moment of a shared machine does not fall on one side
only). Per model and configuration it reports the median over the rounds of

    steps/s          = count / seconds
    ratio to a       = (median steps/s) / (median steps/s of a)
    all-reduce share = all_reduce_seconds / seconds           (c only)
    steal            = CPU seconds the hypervisor gave to other machines during the run
                       (/proc/stat's `steal`, all CPUs; 0 on bare metal)

and the load average before and after. A step is one global batch in every configuration, so
steps/s compare directly. --mpirun-options adds options to mpirun in c (for example
"--bind-to none"; by default Open MPI binds each of the two processes to a core). --markdown prints the table for BENCHMARKS.md; --json the
medians and every run.

Before measuring it checks that MPI can run: it skips, with a message and exit status 0, when
`mpirun` is not on the PATH or when the binary was built without the MPI trait (a probe run,
`mpirun -np 2 BINARY train --limit 600 --epochs 1 --json`, then fails with "built without MPI
support"). Build the binary with `swift build -c release --traits OpenBLAS,MPI`. As root, Open MPI
needs OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1, which this script sets.

Usage: python3 Benchmarks/mpi_scaling.py [--rounds R] [--binary PATH] [--models mlp,cnn]
                                         [--mlp-limit N] [--cnn-limit N] [--mpirun-options OPTS]
                                         [--markdown | --json] [--quiet]
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BINARY = os.path.join(ROOT, ".build", "release", "backprop")

# The models: name -> the options that select it.
MODELS = {"mlp": [], "cnn": ["--layers", "cnn"]}

# The configurations: (key, label, processes, threads per process).
CONFIGURATIONS = [
    ("a", "1 process x 1 thread", 1, 1),
    ("b", "1 process x 2 threads", 1, 2),
    ("c", "2 processes x 1 thread (mpirun -np 2)", 2, 1),
]

NO_MPI_MESSAGE = "built without MPI support"


def skip(message):
    print(f"mpi_scaling: skipped: {message}")
    sys.exit(0)


def environment():
    """The environment for the runs: Open MPI refuses to run as root without these two."""
    env = dict(os.environ)
    env.pop("BACKPROP_THREADS", None)  # --threads says it
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def train_command(mpirun, mpirun_options, binary, processes, threads, model, limit):
    command = [binary, "train", "--epochs", "1", "--limit", str(limit), "--json", "--threads", str(threads)]
    command += MODELS[model]
    if processes > 1:
        command = [mpirun] + mpirun_options + ["-np", str(processes)] + command
    return command


def run(command, env):
    """Runs `command`; returns (return code, stdout, stderr)."""
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return completed.returncode, completed.stdout, completed.stderr


def last_json_object(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON object in the output")


def check_mpi(mpirun, binary, env):
    """Skips unless `mpirun -np 2 BINARY train` runs as two processes of one data-parallel run."""
    if mpirun is None:
        skip("mpirun is not on the PATH (Debian: apt-get install openmpi-bin libopenmpi-dev)")
    if not os.access(binary, os.X_OK):
        sys.exit(
            f"mpi_scaling: {binary} is not an executable; build it with "
            "`swift build -c release --traits OpenBLAS,MPI` or give --binary PATH"
        )
    command = [mpirun, "-np", "2", binary, "train", "--limit", "600", "--epochs", "1", "--json"]
    code, out, err = run(command, env)
    if NO_MPI_MESSAGE in err:
        skip(f"{binary} was {NO_MPI_MESSAGE}; build it with `swift build -c release --traits OpenBLAS,MPI`")
    if code != 0:
        sys.exit(f"mpi_scaling: the probe `{' '.join(command)}` failed (exit {code}):\n{err.strip()[-2000:]}")
    processes = last_json_object(out).get("steps", {}).get("processes")
    if processes != 2:
        sys.exit(f"mpi_scaling: the probe ran as {processes} process(es), expected 2:\n{out.strip()[-2000:]}")


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return float("nan")


def steal_seconds():
    """CPU time the hypervisor gave to others (all CPUs, /proc/stat's `steal`), in seconds; 0 if unknown."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def measure(args, mpirun, env):
    """Runs the rounds; returns {model: {config key: [{"steps_per_s", "all_reduce_share", ...}]}}."""
    models = args.models
    limits = {"mlp": args.mlp_limit, "cnn": args.cnn_limit}
    results = {model: {key: [] for key, *_ in CONFIGURATIONS} for model in models}
    for round_index in range(args.rounds):
        # Rotate the order of the configurations, so that each takes each position in turn.
        shift = round_index % len(CONFIGURATIONS)
        order = CONFIGURATIONS[shift:] + CONFIGURATIONS[:shift]
        for model in models:
            for key, label, processes, threads in order:
                command = train_command(
                    mpirun, args.mpirun_options, args.binary, processes, threads, model, limits[model])
                steal_before = steal_seconds()
                code, out, err = run(command, env)
                steal = steal_seconds() - steal_before
                if code != 0:
                    sys.exit(f"mpi_scaling: `{' '.join(command)}` failed (exit {code}):\n{err.strip()[-2000:]}")
                steps = last_json_object(out)["steps"]
                if steps["processes"] != processes or steps["threads"] != threads:
                    sys.exit(f"mpi_scaling: `{' '.join(command)}` ran {steps}, expected {processes} x {threads}")
                sample = {
                    "steps": steps["count"],
                    "seconds": steps["seconds"],
                    "all_reduce_seconds": steps["all_reduce_seconds"],
                    "steps_per_s": steps["count"] / steps["seconds"],
                    "all_reduce_share": steps["all_reduce_seconds"] / steps["seconds"],
                    "load_average": load_average(),
                    "steal_seconds": steal,
                }
                results[model][key].append(sample)
                if not args.quiet:
                    print(
                        f"round {round_index + 1}/{args.rounds} {model} {key} ({label}): "
                        f"{sample['steps']} steps in {sample['seconds']:.3f} s = {sample['steps_per_s']:.1f} steps/s, "
                        f"all-reduce {100 * sample['all_reduce_share']:.1f}%, load {sample['load_average']:.2f}, "
                        f"steal {sample['steal_seconds']:.2f} s",
                        file=sys.stderr,
                    )
    return results


def summarize(results):
    """Medians per model and configuration, and the ratio of each to configuration a."""
    summary = {}
    for model, by_config in results.items():
        base = statistics.median(s["steps_per_s"] for s in by_config["a"])
        summary[model] = {}
        for key, label, processes, threads in CONFIGURATIONS:
            samples = by_config[key]
            rates = [s["steps_per_s"] for s in samples]
            median = statistics.median(rates)
            summary[model][key] = {
                "label": label,
                "processes": processes,
                "threads": threads,
                "steps": samples[0]["steps"],
                "steps_per_s": median,
                "steps_per_s_runs": rates,
                "ratio_to_a": median / base,
                "all_reduce_share": statistics.median(s["all_reduce_share"] for s in samples),
                "all_reduce_share_runs": [s["all_reduce_share"] for s in samples],
                "steal_seconds": statistics.median(s["steal_seconds"] for s in samples),
            }
    return summary


def print_text(summary, loads):
    for model, by_config in summary.items():
        print(f"{model} ({by_config['a']['steps']} steps of batch 128 per run):")
        for key, row in by_config.items():
            runs = ", ".join(f"{r:.1f}" for r in row["steps_per_s_runs"])
            line = f"  {key}  {row['label']:<40} {row['steps_per_s']:8.1f} steps/s ({runs})  x{row['ratio_to_a']:.2f}"
            if row["processes"] > 1:
                line += f"  all-reduce {100 * row['all_reduce_share']:.1f}% of a step"
            print(line + f"  steal {row['steal_seconds']:.2f} s")
    print(f"load average: {loads[0]:.2f} before, {loads[1]:.2f} after")


def print_markdown(summary, loads):
    print("| model | configuration | steps/s (median; each round) | ratio to a | all-reduce share of a step | steal |")
    print("|---|---|---|---|---|---|")
    for model, by_config in summary.items():
        name = "MLP 784-256-128-10" if model == "mlp" else "`--layers cnn`"
        for key, row in by_config.items():
            runs = ", ".join(f"{r:.1f}" for r in row["steps_per_s_runs"])
            share = "—"
            if row["processes"] > 1:
                shares = ", ".join(f"{100 * s:.1f}" for s in row["all_reduce_share_runs"])
                share = f"{100 * row['all_reduce_share']:.1f}% ({shares})"
            label = row["label"].replace(" x ", " × ")
            print(f"| {name} | {key}: {label} | **{row['steps_per_s']:.1f}** ({runs}) | {row['ratio_to_a']:.2f} | {share} "
                  f"| {row['steal_seconds']:.2f} s |")
    print(f"\nLoad average (1 min): {loads[0]:.2f} before, {loads[1]:.2f} after.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--binary", default=DEFAULT_BINARY, help="backprop built with the MPI trait "
                        "(default .build/release/backprop)")
    parser.add_argument("--mpirun", default=None, help="the launcher (default: mpirun on the PATH)")
    parser.add_argument("--mpirun-options", default="", help="more options for mpirun in c, as one string "
                        "(e.g. '--bind-to none'; default: none, so Open MPI binds each process to a core)")
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn (default both)")
    parser.add_argument("--mlp-limit", type=int, default=30000,
                        help="--limit for the MLP: 25,000 training images, 196 steps (default 30000)")
    parser.add_argument("--cnn-limit", type=int, default=12000,
                        help="--limit for the cnn: 10,000 training images, 79 steps (default 12000)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--markdown", action="store_true", help="print the table for BENCHMARKS.md")
    output.add_argument("--json", action="store_true", help="print the medians and every run as JSON")
    parser.add_argument("--quiet", action="store_true", help="no line per run on stderr")
    args = parser.parse_args()
    args.mpirun_options = shlex.split(args.mpirun_options)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        parser.error(f"--models: expected mlp and/or cnn, found {','.join(unknown) or 'nothing'}")
    if args.rounds < 1:
        parser.error("--rounds: expected at least 1")

    env = environment()
    mpirun = args.mpirun or shutil.which("mpirun")
    check_mpi(mpirun, args.binary, env)

    started = datetime.datetime.now(datetime.timezone.utc)
    loads = [load_average()]
    results = measure(args, mpirun, env)
    loads.append(load_average())
    summary = summarize(results)

    if args.json:
        print(json.dumps({
            "started_utc": started.isoformat(timespec="seconds"),
            "load_average": loads,
            "binary": args.binary,
            "rounds": args.rounds,
            "limits": {"mlp": args.mlp_limit, "cnn": args.cnn_limit},
            "mpirun_options": args.mpirun_options,
            "summary": summary,
            "runs": results,
        }, indent=1))
    elif args.markdown:
        extra = f", mpirun {' '.join(args.mpirun_options)}" if args.mpirun_options else ""
        print(f"Started {started:%Y-%m-%d %H:%M} UTC, {args.rounds} rounds, {os.cpu_count()} cores, "
              f"--limit {args.mlp_limit} (MLP) / {args.cnn_limit} (cnn){extra}.\n")
        print_markdown(summary, loads)
    else:
        print_text(summary, loads)


if __name__ == "__main__":
    main()
