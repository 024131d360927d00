"""Training-step speed levers (issue #24), measured interleaved in one run beside the matmul peak.

    .venv/bin/python bench/step_levers.py                        # every lever, both architectures
    .venv/bin/python bench/step_levers.py --group lstm --rounds 7
    .venv/bin/python bench/step_levers.py --only base projected projected+bf16_keras --group lstm
    .venv/bin/python bench/step_levers.py --kernels --group lstm   # oneDNN's kernels per variant
    .venv/bin/python bench/step_levers.py --list

Each variant (a lever alone, or a combination) runs in a worker process of its own, so
that levers read at process start (TF_ENABLE_ONEDNN_OPTS, thread pools, grappler options)
differ between variants; a lever that is a setting is the real `--set` override. Every
worker builds the default preset's model (or the Transformer candidate), compiles it as
the Trainer does (`seq2seq.compile_model`: Adam, clipnorm, the preset's weight averaging),
fits with the Trainer's per-step learning-rate callback (`trainer.WarmupAndSchedule`), and
waits. The driver then runs the workers one at a time, round after round (the order
rotated each round), each for about `--seconds` of steps on one synthetic batch of the
Trainer's shapes (16 source ids, 17 decoder positions, random lengths, vocabularies of
4,109 and 4,906), and a peak worker times 2048² matmuls in float32 and bfloat16 in the
same rounds. It prints medians over the rounds: seconds a step, examples a second, the
step's matmul GFLOPs (`bench/flops.py`) and the GFLOP/s achieved, beside the peaks.

With --kernels each worker instead runs two steps with ONEDNN_VERBOSE=1 and the driver
prints, per variant, which oneDNN primitives and implementations ran (e.g.
`gemm_api` / `brg:avx512_core_bf16`), how often and for how long a step.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time

SOURCE_LENGTH, TARGET_LENGTH = 16, 17  # the Trainer's: en_ids [16], ja_ids [18] shifted
SOURCE_VOCAB, TARGET_VOCAB = 4109, 4906
TRANSFORMER = ["model.architecture=transformer", "model.units=256", "model.layers=2",
               "model.feedforward_dim=512", "model.dropout=0.1", "training.learning_rate=0.001",
               "training.warmup_steps=1000", "training.adam_beta_2=0.98"]
TRANSFORMER_3X3 = ["model.architecture=transformer", "model.dropout=0.1",
                   "training.learning_rate=0.001", "training.warmup_steps=1000",
                   "training.adam_beta_2=0.98"]
PROTOCOL = "@@levers "


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    settings: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # In-process TensorFlow options applied before any op: grappler's oneDNN bfloat16
    # rewrite, and the intra/inter-op thread pools (0: TensorFlow's default).
    grappler_bf16: bool = False
    intra_op: int = 0
    inter_op: int = 0


XLA = ("training.jit_compile=true",)
PROJECTED = ("model.project_inputs_once=true",)
FUSED = ("model.fused_qkv=true",)
BF16 = ("training.precision=mixed_bfloat16",)


def _batches(prefix: str, base: tuple[str, ...], sizes=(64, 128, 256)) -> list[Variant]:
    return [Variant(f"{prefix}batch{size}", (*base, f"training.batch_size={size}"))
            for size in sizes]


def variants(group: str) -> list[Variant]:
    """The levers of issue #24 for one architecture ("lstm", "transformer", "transformer3")."""
    arch = {"lstm": (), "transformer": tuple(TRANSFORMER),
            "transformer3": tuple(TRANSFORMER_3X3)}[group]
    common = [
        Variant("base", arch),
        Variant("xla", (*arch, *XLA)),
        Variant("onednn_off", arch, env=(("TF_ENABLE_ONEDNN_OPTS", "0"),)),
        Variant("bf16_keras", (*arch, *BF16)),
        Variant("bf16_grappler", arch, grappler_bf16=True),
        Variant("intra1_inter1", arch, intra_op=1, inter_op=1),
        Variant("intra2_inter1", arch, intra_op=2, inter_op=1),
        Variant("intra1_inter2", arch, intra_op=1, inter_op=2),
        Variant("omp1", arch, env=(("OMP_NUM_THREADS", "1"),)),
    ]
    if group == "lstm":
        kept = (*arch, *PROJECTED)
        return [*common[:2], Variant("projected", kept), *common[2:],
                Variant("xla+projected", (*arch, *XLA, *PROJECTED)),
                Variant("projected+bf16_keras", (*kept, *BF16)),
                Variant("xla+bf16_keras", (*arch, *XLA, *BF16)),
                *_batches("", arch), *_batches("projected+", kept),
                *_batches("projected+bf16_keras+", (*kept, *BF16))]
    kept = (*arch, *XLA, *FUSED)
    return [*common, Variant("fused_qkv", (*arch, *FUSED)),
            Variant("xla+fused_qkv", kept),
            Variant("fused_qkv+bf16_keras", (*arch, *FUSED, *BF16)),
            Variant("xla+bf16_keras", (*arch, *XLA, *BF16)),
            Variant("xla+fused_qkv+bf16_keras", (*kept, *BF16)),
            *_batches("", arch), *_batches("xla+fused_qkv+", kept),
            *_batches("fused_qkv+bf16_keras+", (*arch, *FUSED, *BF16)),
            *_batches("xla+fused_qkv+bf16_keras+", (*kept, *BF16))]


# ---------------------------------------------------------------- the worker (one variant)

def _send(message: dict) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(message) + "\n")
    sys.stdout.flush()


def worker(variant: Variant, kernels: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from enja.models.architectures import registry, seq2seq
    from enja.models.training import trainer
    from enja.pipeline import configs
    from enja.preprocessing import features
    from flops import training_flops

    if variant.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(variant.intra_op)
    if variant.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(variant.inter_op)
    if variant.grappler_bf16:
        tf.config.optimizer.set_experimental_options(
            {"auto_mixed_precision_onednn_bfloat16": True})
    config = configs.with_overrides(configs.PRESETS["default"], list(variant.settings))
    keras.utils.set_random_seed(config.training.seed)
    keras.mixed_precision.set_global_policy(config.training.precision)
    model = registry.build(config.model, SOURCE_VOCAB, TARGET_VOCAB)
    seq2seq.compile_model(model.trainer, config.training)
    batch_size = config.training.batch_size
    rng = np.random.default_rng(0)

    def ids(vocab: int, length: int) -> np.ndarray:
        out = rng.integers(features.NUM_RESERVED, vocab, size=(batch_size, length))
        lengths = rng.integers(5, length + 1, size=(batch_size, 1))
        out[np.arange(length)[None, :] >= lengths] = features.PAD_ID
        return out

    source, target = ids(SOURCE_VOCAB, SOURCE_LENGTH), ids(TARGET_VOCAB, TARGET_LENGTH + 1)
    batch = ({seq2seq.SOURCE_INPUT: source, seq2seq.TARGET_INPUT: target[:, :-1]},
             target[:, 1:])
    data = tf.data.Dataset.from_tensors(batch).cache()
    schedule = trainer.WarmupAndSchedule(config.training)

    def fit(steps: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        model.trainer.fit(data.repeat(steps), verbose=0, callbacks=[schedule])
        return time.perf_counter() - wall, time.process_time() - cpu

    start = time.perf_counter()
    fit(2)  # traces (and with XLA compiles) the step
    compile_s = time.perf_counter() - start
    step_s = min(fit(3)[0] for _ in range(2)) / 3
    _send({"ready": True, "compile_s": compile_s, "step_s": step_s, "batch_size": batch_size,
           "jit_compile": bool(model.trainer.jit_compile),
           "gflop_per_step": training_flops(config.model, batch_size, SOURCE_LENGTH,
                                            TARGET_LENGTH, TARGET_VOCAB) / 1e9})
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        steps = int(command[1])
        wall, cpu = fit(steps)
        _send({"wall_s": wall / steps, "cpu_s": cpu / steps})


def peak_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from flops import peak_matmul_flops

    peak_matmul_flops("float32", 0.2)
    _send({"ready": True})
    for line in sys.stdin:
        if not line.strip() or line.strip() == "quit":
            break
        _send({dtype: peak_matmul_flops(dtype, 1.5) / 1e9 for dtype in ("float32", "bfloat16")})


# ---------------------------------------------------------------- the driver

class Worker:
    def __init__(self, args: list[str], env: dict[str, str], kernels: bool = False):
        self.kernels = kernels
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *args], env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.verbose: list[str] = []

    def receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL):])
            if line.startswith("onednn_verbose,primitive,exec") and self.kernels:
                self.verbose.append(line.strip())
        raise RuntimeError(f"worker {self.process.args} ended (exit {self.process.wait()})")

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self) -> None:
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.process.wait(timeout=60)


def _start(variant: Variant, kernels: bool) -> Worker:
    env = {**os.environ, **dict(variant.env), **({"ONEDNN_VERBOSE": "1"} if kernels else {})}
    return Worker(["--worker", json.dumps(dataclasses.asdict(variant))]
                  + (["--kernels"] if kernels else []), env, kernels)


def summarize_kernels(lines: list[str], steps: int) -> list[tuple[str, int, float]]:
    """(primitive, implementation, data types) → executions and milliseconds a step."""
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for line in lines:
        fields = line.split(",")
        # onednn_verbose,primitive,exec,cpu,<primitive>,<implementation>,<prop>,<memory>,...,<ms>
        primitive, implementation, memory = fields[4], fields[5], fields[7]
        dtypes = "/".join(part.split(":")[0].split("_", 1)[-1] for part in memory.split())
        key = f"{primitive} {implementation} {dtypes}"
        totals[key][0] += 1
        totals[key][1] += float(fields[-1])
    return sorted(((key, round(count / steps), ms / steps) for key, (count, ms) in totals.items()),
                  key=lambda row: -row[2])


def run_kernels(chosen: list[Variant], steps: int = 2) -> None:
    for variant in chosen:
        worker = _start(variant, kernels=True)
        ready = worker.receive()
        worker.verbose.clear()
        worker.ask(f"steps {steps}")
        print(f"\n## {variant.name} (jit_compile {ready['jit_compile']}): oneDNN primitives a step")
        rows = summarize_kernels(worker.verbose, steps)
        if not rows:
            print("  (none: no oneDNN primitive ran)")
        for key, count, ms in rows[:12]:
            print(f"  {ms:8.2f} ms  ×{count:<5d} {key}")
        worker.close()


def run_speed(chosen: list[Variant], rounds: int, seconds: float, label: str) -> list[dict]:
    peak = Worker(["--peak-worker"], dict(os.environ))
    peak.receive()
    workers, ready = {}, {}
    for variant in chosen:  # one at a time, so that each compiles alone
        workers[variant.name] = _start(variant, kernels=False)
        ready[variant.name] = workers[variant.name].receive()
        print(f"# {variant.name}: ready (first steps {ready[variant.name]['compile_s']:.1f} s, "
              f"jit_compile {ready[variant.name]['jit_compile']})", file=sys.stderr, flush=True)
    times: dict[str, list[dict]] = {v.name: [] for v in chosen}
    peaks: list[dict] = []
    for r in range(rounds):
        order = chosen[r % len(chosen):] + chosen[:r % len(chosen)]
        peaks.append(peak.ask("peak"))
        for variant in order:
            steps = max(3, math.ceil(seconds / ready[variant.name]["step_s"]))
            times[variant.name].append(workers[variant.name].ask(f"steps {steps}"))
        print(f"# round {r + 1}/{rounds}: " + ", ".join(
            f"{v.name} {times[v.name][-1]['wall_s']:.3f}" for v in chosen)
            + f"; peaks {peaks[-1]['float32']:.0f}/{peaks[-1]['bfloat16']:.0f}",
            file=sys.stderr, flush=True)
    peaks.append(peak.ask("peak"))
    for worker in (*workers.values(), peak):
        worker.close()
    peak32 = statistics.median(p["float32"] for p in peaks)
    peak16 = statistics.median(p["bfloat16"] for p in peaks)
    rows = []
    base = statistics.median(t["wall_s"] for t in times[chosen[0].name])
    print(f"\n## {label}: medians of {rounds} interleaved rounds; peak float32 "
          f"{peak32:.0f} GFLOP/s (range {min(p['float32'] for p in peaks):.0f}–"
          f"{max(p['float32'] for p in peaks):.0f}), bfloat16 {peak16:.0f} "
          f"({min(p['bfloat16'] for p in peaks):.0f}–{max(p['bfloat16'] for p in peaks):.0f})")
    print("| variant | batch | s/step (median) | best | CPU s/step | examples/s | GFLOP/step | "
          "GFLOP/s | % f32 peak | × base examples/s (median) | × base (best) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base_rate = ready[chosen[0].name]["batch_size"] / base
    base_best = ready[chosen[0].name]["batch_size"] / min(
        t["wall_s"] for t in times[chosen[0].name])
    for variant in chosen:
        walls = [t["wall_s"] for t in times[variant.name]]
        wall = statistics.median(walls)
        info = ready[variant.name]
        rate = info["batch_size"] / wall
        row = {"variant": variant.name, "settings": list(variant.settings),
               "env": dict(variant.env), "grappler_bf16": variant.grappler_bf16,
               "intra_op": variant.intra_op, "inter_op": variant.inter_op,
               "batch_size": info["batch_size"], "s_per_step": wall,
               "s_per_step_range": [min(walls), max(walls)], "s_per_step_rounds": walls,
               "cpu_s_per_step": statistics.median(t["cpu_s"] for t in times[variant.name]),
               "examples_per_s": rate, "gflop_per_step": info["gflop_per_step"],
               "gflop_s": info["gflop_per_step"] / wall, "jit_compile": info["jit_compile"],
               "first_steps_s": info["compile_s"], "peak_float32": peak32,
               "peak_bfloat16": peak16}
        rows.append(row)
        best = info["batch_size"] / min(walls) / base_best
        print(f"| {variant.name} | {row['batch_size']} | {wall:.4f} | {min(walls):.4f} | "
              f"{row['cpu_s_per_step']:.4f} | {rate:.0f} | "
              f"{row['gflop_per_step']:.2f} | {row['gflop_s']:.1f} | "
              f"{100 * row['gflop_s'] / peak32:.0f} | {rate / base_rate:.2f} | {best:.2f} |")
    sys.stdout.flush()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--peak-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--group", nargs="+", default=["lstm", "transformer"],
                        choices=["lstm", "transformer", "transformer3"])
    parser.add_argument("--only", nargs="+", help="variant names to run (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.5,
                        help="about this long of steps per variant per round")
    parser.add_argument("--kernels", action="store_true",
                        help="print the oneDNN kernels each variant runs, not its speed")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    args = parser.parse_args()
    if args.peak_worker:
        peak_worker()
        return
    if args.worker:
        fields = json.loads(args.worker)
        fields["settings"] = tuple(fields["settings"])
        fields["env"] = tuple(tuple(pair) for pair in fields["env"])
        worker(Variant(**fields), args.kernels)
        return
    results = {}
    for group in args.group:
        chosen = [v for v in variants(group) if not args.only or v.name in args.only]
        if args.list:
            for v in chosen:
                print(group, v)
            continue
        if args.kernels:
            run_kernels(chosen)
        else:
            results[group] = run_speed(chosen, args.rounds, args.seconds, group)
    if args.json and results:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
