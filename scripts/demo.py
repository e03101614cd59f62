"""`make demo`: from nothing to an identifiability report in about half an hour on 2 cores.

Stages (each one a command of this project, printed before it runs):

1. ``assets``   -- ``datagen assets``: the normalised mesh library (cached outside the repo).
2. ``data``     -- ``datagen generate --config configs/datagen/demo.yaml``: 64x64 draft renders.
3. ``validate`` -- ``datagen validate`` and ``datagen preview`` (contact sheet).
4. ``fit``      -- ``mmcl fit --config configs/train/demo.yaml``: ConvNet image / text encoders, InfoNCE.
5. ``dmvae``    -- ``mmcl dmvae fit / generate / eval`` with configs/dmvae/demo.yaml.
6. ``embed``    -- ``mmcl embed``: image and text embeddings of val and test.
7. ``probe``    -- ``mmcl probe``: which factors the embeddings identify.
8. ``report``   -- ``runs/demo/report.md`` with its PNGs, and a summary table here.

``fit`` and ``dmvae`` need only the dataset, not each other, so they run at the same time with
one CPU thread each (their output lines prefixed ``[fit]`` / ``[dmvae]``): these small models
gain little from a second thread (the demo's fit: about 330 samples/s on one thread, 420 on
two), so two trainings side by side on 2 cores finish far sooner than one after the other.
``embed`` and ``probe`` need only the fit: they follow it in its lane while the DMVAE trains on.

A finished stage leaves ``OUT/.stages/NAME.json`` (command, seconds) and is skipped on a rerun;
an interrupted one starts again, and the commands themselves resume (``datagen generate``
renders only missing shards, ``mmcl fit --ckpt_path last`` and ``mmcl dmvae fit`` continue from
their last checkpoint). ``--restart`` deletes OUT first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from mmcl.machine import cpu_summary
from mmcl.paths import relative_inside
from mmcl.precision import LOGGED, choose_precision

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONTENT = ("object_shape", "object_xpos", "object_ypos")
DMVAE_PROBED = ("c", "c_image", "c_text", "m_image", "m_text")  # latents of the DMVAE probing matrix
# what the report shows besides content: style (the object's hue, which depends on x in the
# causal colour mode), what only the image shows, what only the sentence shows
OTHERS = (
    "object_color",
    "object_alpharot",
    "object_betarot",
    "object_gammarot",
    "spotlight_pos",
    "spotlight_color",
    "background_color",
    "text_phrasing",
)


# What each stage takes, in minutes, on 2 cores, by the precision the trainings will choose
# (mmcl.precision): the fit and the DMVAE run about 2x longer in fp32 than with native bf16.
# A stage projected to take more than OVER_BUDGET times this, once it has run GRACE_SECONDS,
# gets one line saying so and why it may be (no silent 4-hour runs). Measured in the runs of
# docs/demo/README.md: "32-true" on the AVX2-only AMD EPYC with the current configs,
# "bf16-mixed" on the Intel Xeon with native bf16 with the configs before (3 500 fit steps, the
# denoiser's ACCURATE prefilter: longer than now, so its watch warns late rather than early).
EXPECTED_MINUTES = {
    "bf16-mixed": {"assets": 1.5, "data": 13.0, "validate": 0.3, "fit": 10.5, "dmvae": 12.0, "embed": 0.3, "probe": 0.5},
    "32-true": {"assets": 1.5, "data": 9.5, "validate": 0.3, "fit": 19.0, "dmvae": 19.0, "embed": 0.3, "probe": 0.5},
}  # fmt: skip


def expected_minutes() -> tuple[dict[str, float], str]:
    """The stage expectations for the precision this CPU's trainings will choose, and that precision."""
    precision, _ = choose_precision("cpu", None)
    return dict(EXPECTED_MINUTES.get(precision, EXPECTED_MINUTES["32-true"])), precision


OVER_BUDGET = 3.0
GRACE_SECONDS = 60.0
# "ETA 12.3 min" (mmcl dmvae), "ETA=1:02:03" / "ETA 0:12:05" / "ETA 12:05" (mmcl fit's bar, datagen)
_ETA = re.compile(r"ETA[= ]\s*(?:(\d+(?:\.\d+)?) min|(\d+(?::\d\d){1,2}))")


def parse_eta(line: str) -> float | None:
    """Seconds left by the last ETA a progress line of this project's commands shows, if any."""
    found = _ETA.findall(line)
    if not found:
        return None
    minutes, clock = found[-1]
    if minutes:
        return float(minutes) * 60
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


class BudgetWatch:
    """Warns once when a stage is projected (elapsed + the ETA its command last printed, or only
    the elapsed time) to take more than ``over`` times its expected seconds, after ``grace``."""

    def __init__(self, name: str, expected_s: float, over: float = OVER_BUDGET, grace: float = GRACE_SECONDS,
                 start: float | None = None, threads: int | None = None):  # fmt: skip
        self.name, self.expected_s, self.over, self.grace = name, expected_s, over, grace
        self.start = time.monotonic() if start is None else start
        self.threads = threads
        self.eta: float | None = None
        self.eta_at = self.start
        self.warned = False
        self.precisions: set[str] = set()  # what the stage's trainings said they run in

    def observe(self, line: str, now: float | None = None) -> None:
        self.precisions.update(LOGGED.findall(line))
        eta = parse_eta(line)
        if eta is not None:
            self.eta, self.eta_at = eta, time.monotonic() if now is None else now

    def projected(self, now: float) -> float:
        elapsed = now - self.start
        if self.eta is None:
            return elapsed
        return max(elapsed, self.eta_at - self.start + self.eta)

    def check(self, now: float | None = None) -> str | None:
        """The warning line, the first time the stage is over budget; else None."""
        now = time.monotonic() if now is None else now
        if self.warned or now - self.start < self.grace:
            return None
        projected = self.projected(now)
        if projected <= self.over * self.expected_s:
            return None
        self.warned = True
        how = "from its ETA" if self.eta is not None else "so far"
        return (
            f"[demo] WARNING: {self.name} is on course for {projected / 60:.0f} min ({how}), "
            f"{projected / self.expected_s:.1f}x its expected {self.expected_s / 60:.1f} min; "
            f"likely cause: {likely_cause(self.threads, self.precisions)}"
        )


def likely_cause(threads: int | None = None, precisions: Iterable[str] = ()) -> str:
    """What most often makes a stage slow here: emulated bf16, too few threads, a busy CPU."""
    causes = []
    suited, reason = choose_precision("cpu", None)
    if suited != "bf16-mixed" and any(p.startswith("bf16") for p in precisions):
        causes.append(f"training in bf16 (set in a config or flag) although {reason}")
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cores + 0.5:
        causes.append(f"another process on the cores (load average {load:.1f} on {cores} cores)")
    omp = os.environ.get("OMP_NUM_THREADS")
    if threads is None and omp and int(omp) < cores:
        causes.append(f"OMP_NUM_THREADS={omp} on {cores} cores")
    if cores < 2:
        causes.append("a single core (the demo is sized for 2)")
    if not causes:
        causes.append("a slower CPU than the one the expectations were measured on")
    return "; ".join(causes) + f" [{cpu_summary()}]"


def repo_relative(arg: str) -> str:
    """An absolute path inside the repository as a path relative to it; anything else unchanged."""
    return relative_inside(arg, REPO) if Path(arg).is_absolute() else arg


def tool(name: str) -> str:
    """A console script of this environment (the venv's bin), falling back to PATH."""
    path = BIN / name
    return str(path) if path.exists() else name


class Demo:
    def __init__(self, out: Path, workers: int, configs: dict[str, str], max_threads: int | None = None):
        self.out = out
        self.workers = workers
        self.max_threads = max_threads  # --threads: a cap, for a CPU that something else shares
        self.configs = configs
        self.stages = out / ".stages"
        self.data = out / "data"
        self.timings: dict[str, float] = {}
        # stages that ran at the same time: per group its lanes, each lane stages one after another
        self.together: list[tuple[tuple[str, ...], ...]] = []
        self.threads: int | None = None  # torch threads per command while stages share the CPU
        self.expected, self.precision = expected_minutes()  # minutes per stage (tests shrink them)
        self.grace = GRACE_SECONDS
        self.cpu = cpu_summary()  # printed with every stage and kept in its record

    def run(self, cmd: list[str], prefix: str | None = None, watch: BudgetWatch | None = None) -> None:
        """Run one command in the repository root, with paths inside it written relative to it (so
        stage records and what the tools write into reports hold no path of this machine); with
        ``prefix`` its output lines are tagged (stages running at once); ``watch`` reads its
        progress lines and says when the stage runs far over its expected time."""
        cmd = [repo_relative(arg) for arg in cmd]
        tag = f"[{prefix}] " if prefix else ""
        print(f"{tag}$ {shlex.join(cmd)}", flush=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.threads)
        # piped even when alone, so the budget watch reads the command's ETA
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in tagged_lines(proc.stdout, tag, on_line=None if watch is None else watch.observe):
            print(line, flush=True)
            warn(watch)
        returncode = proc.wait()
        if returncode != 0:
            raise SystemExit(
                f"demo: `{shlex.join(cmd)}` failed (exit {returncode}); fix the error above and run "
                f"`make demo` again: finished stages are kept."
            )

    def _done_before(self, name: str) -> bool:
        marker = self.stages / f"{name}.json"
        if not marker.is_file():
            return False
        self.timings[name] = json.loads(marker.read_text())["seconds"]
        print(f"[demo] {name}: done before, skipped ({marker})", flush=True)
        return True

    def _run_stage(
        self, name: str, commands: Callable[[], Iterable[list[str]]], prefix: bool = False
    ) -> None:
        print(
            f"\n[demo] ===== {name} ===== (expected {self.expected[name]:.1f} min with {self.precision} "
            f"trainings; {self.cpu})",
            flush=True,
        )
        t0 = time.perf_counter()
        watch = BudgetWatch(name, self.expected[name] * 60, grace=self.grace, threads=self.threads)
        ran = []
        for cmd in commands():
            self.run(cmd, name if prefix else None, watch)
            ran.append(shlex.join(repo_relative(arg) for arg in cmd))  # no path of this machine
        # rounded as the record keeps it, so a rerun's report (from the records) says the same
        seconds = round(time.perf_counter() - t0, 1)
        self.timings[name] = seconds
        self.stages.mkdir(parents=True, exist_ok=True)
        marker = self.stages / f"{name}.json"
        record = {
            "commands": ran,
            "seconds": seconds,
            "cpu": self.cpu,
            "threads": self.threads,
        }
        marker.write_text(json.dumps(record, indent=2) + "\n")
        print(f"[demo] {name}: {seconds / 60:.1f} min", flush=True)

    def stage(self, name: str, commands: Callable[[], Iterable[list[str]]]) -> None:
        if not self._done_before(name):
            self._run_stage(name, commands)

    def stages_together(
        self,
        stages: dict[str, Callable[[], Iterable[list[str]]]],
        then: dict[str, list[tuple[str, Callable[[], Iterable[list[str]]]]]] | None = None,
    ) -> None:
        """Run independent stages at the same time, the CPU's threads shared out between them;
        ``then[name]`` are stages that need ``name`` and run after it in its lane, beside the other
        lanes (the embeddings and probes of the fit while the DMVAE still trains). A failing
        stage stops its lane, not the others; the first failure is raised once all ended."""
        then = then or {}
        lanes = {name: [(name, commands), *then.get(name, [])] for name, commands in stages.items()}
        self.together.append(tuple(tuple(stage for stage, _ in lane) for lane in lanes.values()))
        todo = {
            name: [(stage, commands) for stage, commands in lane if not self._done_before(stage)]
            for name, lane in lanes.items()
        }
        todo = {name: lane for name, lane in todo.items() if lane}
        if not todo:
            return
        self.threads = max(1, (os.cpu_count() or 1) // len(todo))
        if self.max_threads is not None:
            self.threads = min(self.threads, self.max_threads)
        for lane in todo.values():  # the report lists stages in this order, not in the order they end
            for stage, _ in lane:
                self.timings[stage] = 0.0
        failures: list[SystemExit] = []

        def body(name: str, lane) -> None:
            try:
                for stage, commands in lane:
                    self._run_stage(stage, commands, prefix=len(todo) > 1)
            except SystemExit as exc:
                failures.append(exc)

        workers = [threading.Thread(target=body, args=item) for item in todo.items()]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.threads = None
        if failures:
            raise failures[0]

    def wall_seconds(self) -> float:
        """The stages' wall time: stages that ran together count once, by the longest lane."""
        grouped = {name for group in self.together for lane in group for name in lane}
        total = sum(t for name, t in self.timings.items() if name not in grouped)
        for group in self.together:
            total += max(sum(self.timings.get(name, 0.0) for name in lane) for lane in group)
        return total

    # ------------------------------------------------------------------ stages
    def assets(self):
        yield [tool("datagen"), "assets"]

    def generate(self):
        yield [
            tool("datagen"), "generate", str(self.data),
            "--config", self.configs["datagen"], "--workers", str(self.workers),
        ]  # fmt: skip

    def validate(self):
        yield [tool("datagen"), "validate", str(self.data)]
        yield [
            tool("datagen"), "preview", str(self.data), "--split", "train", "-n", "12", "--columns", "6",
            "--title", "Multimodal3DIdent, draft preset (64x64)", "--out", str(self.out / "contact_sheet.png"),
        ]  # fmt: skip

    def fit(self):
        yield [
            tool("mmcl"), "fit", "--config", self.configs["train"],
            "--data.root", str(self.data), "--trainer.default_root_dir", str(self.out / "train"),
            "--ckpt_path", "last",
        ]  # fmt: skip

    def embed(self):
        yield [
            tool("mmcl"), "embed", str(self.out / "train" / "checkpoints" / "last.ckpt"), str(self.data),
            "--split", "val", "test", "--out", str(self.out / "embeddings"),
        ]  # fmt: skip

    def probe(self):
        yield [tool("mmcl"), "probe", str(self.out / "embeddings"), "--out", str(self.out / "probe")]

    def dmvae(self):
        run = self.out / "dmvae"
        # the DMVAE commands set their own torch threads (OMP_NUM_THREADS is only a default)
        threads = [] if self.threads is None else ["--threads", str(self.threads)]
        yield [
            tool("mmcl"), "dmvae", "fit", "--config", self.configs["dmvae"],
            "--out", str(run), "--data.root", str(self.data), *threads,
        ]  # fmt: skip
        yield [
            tool("mmcl"), "dmvae", "generate", "--run", str(run), "--modes", "text2image", "image2text", *threads,
        ]  # fmt: skip
        # 3 epochs of the 12 000 training images (the classifier that judges coherence); the
        # posterior log-variances are left out of the probing matrix (2 of its 7 rows, ~2/7 of
        # its time; docs/dmvae probes them)
        yield [
            tool("mmcl"), "dmvae", "eval", "--run", str(run), "--skip", "unconditional",
            "--classifier-epochs", "3", "--probe-representations", *DMVAE_PROBED, *threads,
        ]  # fmt: skip

    # ------------------------------------------------------------------ report
    def report(self) -> Path:
        probe = json.loads((self.out / "probe" / "results.json").read_text())
        dmvae = json.loads((self.out / "dmvae" / "eval" / "metrics.json").read_text())
        rows = summary_rows(probe["results"] if isinstance(probe, dict) else probe)
        lines = report_markdown(
            self.out,
            rows,
            dmvae,
            self.timings,
            image_backbone_name(self.configs["train"]),
            together=self.together,
            wall_seconds=self.wall_seconds(),
        )
        path = self.out / "report.md"
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)
        print("\n" + terminal_table(rows, dmvae))
        print(f"\nreport: {path}")
        return path


def warn(watch: BudgetWatch | None) -> None:
    line = None if watch is None else watch.check()
    if line:
        print(line, flush=True)


def tagged_lines(stream, tag: str, redraw_every: float = 10.0, on_line=None):
    """Lines of a child's output, each starting with ``tag``. A progress bar redraws itself
    with carriage returns many times a second; of those redraws one every ``redraw_every``
    seconds is kept, so two stages' bars do not flood the terminal. ``on_line`` sees every
    line and redraw, kept or not (the budget watch reads their ETA)."""
    buf, last_redraw = b"", float("-inf")
    for chunk in iter(lambda: stream.read1(65536), b""):
        buf += chunk
        while True:
            ends = [i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0]
            if not ends:
                break
            i = min(ends)
            line, redraw, buf = buf[:i], buf[i : i + 1] == b"\r", buf[i + 1 :]
            text = line.decode(errors="replace").rstrip()
            if not text:
                continue
            if on_line is not None:
                on_line(text)
            if redraw:
                now = time.monotonic()
                if now - last_redraw < redraw_every:
                    continue
                last_redraw = now
            yield tag + text
    if buf.strip():
        yield tag + buf.decode(errors="replace").rstrip()


def best_score(results: list[dict], rep: str, factor: str) -> dict | None:
    """The best probe of one factor on one representation (accuracy or R^2) with its chance level."""
    rows = [r for r in results if r["representation"] == rep and r["factor"] == factor]
    return max(rows, key=lambda r: r["score"]) if rows else None


def summary_rows(results: list[dict]) -> list[dict]:
    out = []
    for factor in CONTENT + OTHERS:
        row = {"factor": factor}
        for rep in ("image", "text"):
            best = best_score(results, rep, factor)
            if best is not None:
                row[rep] = best
                row["role"] = best["role"].replace("_", "-")
        if "image" in row or "text" in row:
            out.append(row)
    return out


def fmt_cell(r: dict | None) -> str:
    if r is None:
        return "–"
    metric = "acc" if r["metric"] == "accuracy" else "R²"
    return f"{r['score']:.2f} {metric} (chance {r['chance']:.2f}, {r['probe']})"


def image_backbone_name(train_config: str | Path) -> str:
    """How the report names the contrastive image encoder of ``train_config``."""
    model = (yaml.safe_load(Path(train_config).read_text()) or {}).get("model") or {}
    return {"resnet18": "ResNet-18", "convnet": "ConvNet"}.get(model.get("image_backbone", "resnet18"), "?")


def report_markdown(
    out: Path,
    rows: list[dict],
    dmvae: dict,
    timings: dict,
    image_backbone: str = "ResNet-18",
    together: Iterable[tuple[tuple[str, ...], ...]] = (),
    wall_seconds: float | None = None,
) -> list[str]:
    total = sum(timings.values()) if wall_seconds is None else wall_seconds
    partners = {
        name: [o for other in group if other != lane for o in other]
        for group in together
        for lane in group
        for name in lane
    }
    lines = [
        "# `make demo` report",
        "",
        f"A 64x64 draft Multimodal3DIdent dataset rendered with Blender, image ({image_backbone}) and",
        "text (ConvNet) encoders trained with symmetric InfoNCE, their embeddings probed for every",
        "ground-truth factor, and a small DMVAE that generates images from sentences and sentences",
        "from images.",
        "",
        "![samples](contact_sheet.png)",
        "",
        "## What the contrastive embeddings identify",
        "",
        "Probes are fitted on the validation split and scored on the test split (SPEC 4). Content",
        "factors are shared by image and sentence; rotations, spotlight and background are only in",
        "the image and the phrasing only in the sentence, so the theory says the encoders discard",
        "them (seed 003, Thm. 4.3). The object's hue is style: only its colour name is in the",
        "sentence, and in the causal colour mode it depends on the x position.",
        "",
        "| factor | role | image embedding | text embedding |",
        "|---|---|---|---|",
    ]
    for row in rows:
        role = row["role"]
        lines.append(
            f"| {row['factor']} | {role} | {fmt_cell(row.get('image'))} | {fmt_cell(row.get('text'))} |"
        )
    lines += [
        "",
        "Best of the linear and nonlinear probes per cell; accuracy for discrete factors, R² for",
        "continuous ones (chance: majority class, R² 0).",
        "",
        "![probes](probe/results.png)",
        "",
        "## DMVAE: generating the missing modality",
        "",
        "Text -> image samples (along a column the same content c from one sentence, along a row",
        "the same image-specific latent m):",
        "",
        "![text to image](dmvae/samples/text2image.png)",
        "",
    ]
    coh = dmvae.get("coherence", {})
    if coh:
        lines += [
            "| coherence | " + " | ".join(CONTENT) + " | sentences that parse |",
            "|---" * (len(CONTENT) + 2) + "|",
        ]
        for direction in ("text2image", "image2text", "reconstruction_image", "reconstruction_text"):
            if direction in coh:
                vals = " | ".join(f"{coh[direction].get(f, float('nan')):.2f}" for f in CONTENT)
                parsed = coh[direction].get("parsed")
                lines.append(f"| {direction} | {vals} | {'' if parsed is None else f'{parsed:.2f}'} |")
        lines += [
            "",
            "Reconstruction (content and specific latent of the same example) is the ceiling of",
            "cross-modal generation: what the decoders can draw or write at all.",
        ]
        acc = (dmvae.get("factor_classifier") or {}).get("test_accuracy") or {}
        if acc:
            shown = ", ".join(f"{f} {acc[f]:.2f}" for f in CONTENT if f in acc)
            lines += ["", f"Text -> image coherence is judged by a factor classifier trained on real images "
                      f"(its own test accuracy: {shown})."]  # fmt: skip
    lines += [
        "",
        "Image -> text samples (sampled token by token; red: not a sentence of the grammar):",
        "",
        "![image to text](dmvae/samples/image2text.png)",
        "",
        "Probing matrix of the DMVAE's latents (content c, image-specific m_img, text-specific m_txt):",
        "",
        "![probing matrix](dmvae/eval/probing_matrix.png)",
        "",
        "## Time per stage",
        "",
        "| stage | minutes |",
        "|---|---|",
    ]
    for k, v in timings.items():
        alongside = f" (at the same time as {', '.join(partners[k])})" if partners.get(k) else ""
        lines.append(f"| {k}{alongside} | {v / 60:.1f} |")
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    lines += [
        f"| total (wall) | {total / 60:.1f} |",
        "",
        f"Outputs: `{shown}` (commands per stage in `.stages/`).",
    ]
    return lines


def terminal_table(rows: list[dict], dmvae: dict) -> str:
    head = f"{'factor':<18}{'role':<16}{'image':>8}{'text':>8}{'chance':>8}"
    out = [head, "-" * len(head)]
    for row in rows:
        role = row["role"]
        img, txt = row.get("image"), row.get("text")
        chance = (img or txt)["chance"]
        out.append(
            f"{row['factor']:<18}{role:<16}"
            + "".join(f"{r['score']:>8.2f}" if r else f"{'–':>8}" for r in (img, txt))
            + f"{chance:>8.2f}"
        )
    for direction in ("text2image", "image2text"):
        coh = (dmvae.get("coherence") or {}).get(direction)
        if coh:
            parsed = f", sentences parsed {coh['parsed']:.2f}" if "parsed" in coh else ""
            out.append(
                f"DMVAE {direction.replace('2', '->')} coherence: "
                + ", ".join(f"{f} {coh[f]:.2f}" for f in CONTENT if f in coh)
                + parsed
            )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "demo")
    p.add_argument(
        "--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)), help="render processes"
    )
    p.add_argument("--restart", action="store_true", help="delete OUT and start from scratch")
    p.add_argument(
        "--threads", type=int, default=None,
        help="torch threads per training command at most (default: the cores shared out between "
        "the trainings that run at once); e.g. 1 when another job holds a core",
    )  # fmt: skip
    for stage in ("datagen", "train", "dmvae"):
        p.add_argument(f"--{stage}-config", default=f"configs/{stage}/demo.yaml", help=f"{stage} YAML")
    args = p.parse_args(argv)
    if args.restart and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    configs = {k: str(Path(getattr(args, f"{k}_config")).resolve()) for k in ("datagen", "train", "dmvae")}
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    demo = Demo(args.out.resolve(), args.workers, configs, max_threads=args.threads)
    t0 = time.perf_counter()
    demo.stage("assets", demo.assets)
    demo.stage("data", demo.generate)
    demo.stage("validate", demo.validate)
    # embed and probe need only the fit: they run in its lane while the DMVAE trains on
    demo.stages_together(
        {"fit": demo.fit, "dmvae": demo.dmvae}, then={"fit": [("embed", demo.embed), ("probe", demo.probe)]}
    )
    demo.report()
    print(f"[demo] finished in {(time.perf_counter() - t0) / 60:.1f} min (this invocation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
