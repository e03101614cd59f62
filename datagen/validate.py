"""``datagen validate ROOT``: check a dataset against its manifest and its own grammar.

Checks, per split: the shard files, sample counts and sha256 listed in the manifest; that
every sample decodes (PNG of the configured resolution, sentence, JSON); that keys and
indices run consecutively; that the latents are the dataset's factors (its design), exactly what
the sampler draws for (seed, split, index), in their domains and equal where both modalities
hold them; that every sentence parses back to its latents (template = phrasing, shape word,
position thirds, every colour name and index, spotlight side, material); that each colour name
is the nearest in its palette; that render-space values match the latents; and that each full-
strength interval edge holds (the causal colour: hue in [xpos/3, (xpos+1)/3)). Any failure gives exit status 2, a readable report and a last line naming the first problem.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datagen import io
from datagen.config import ConfigError, config_from_json
from datagen.design import design_of
from datagen.pipeline import plan_shards
from datagen.progress import Progress
from datagen.sampling import sample
from datagen.text import colour_index, nearest_rgb_name, palette_by_name, palette_digest

MAX_LISTED = 10
# What a report calls the latent behind each slot of the grammar.
SLOT_CHECKS = {
    "SHAPE": "shape word",
    "COLOR": "object_color_name",
    "XPOS": "object_xpos",
    "YPOS": "object_ypos",
    "SPOTLIGHT_COLOR": "spotlight_color_name",
    "BACKGROUND_COLOR": "background_color_name",
    "SPOTLIGHT_POS": "spotlight_pos",
    "MATERIAL": "object_material",
}


@dataclass
class Report:
    root: Path
    checked: Counter = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, check: str, message: str) -> None:
        self.failures.setdefault(check, []).append(message)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def n_failures(self) -> int:
        return sum(len(v) for v in self.failures.values())

    def text(self) -> str:
        lines = [f"validate {self.root}"]
        for what, n in sorted(self.checked.items()):
            lines.append(f"  checked {n:7d} {what}")
        if self.ok:
            lines.append("OK: every check passed")
        else:
            lines.append(f"FAILED: {self.n_failures} problem(s)")
            for check, msgs in self.failures.items():
                lines.append(f"  [{check}] {len(msgs)} problem(s)")
                lines += [f"    - {m}" for m in msgs[:MAX_LISTED]]
                if len(msgs) > MAX_LISTED:
                    lines.append(f"    ... and {len(msgs) - MAX_LISTED} more")
        return "\n".join(lines)


def validate(root: Path, progress: bool = True) -> Report:
    root = Path(root)
    report = Report(root)
    try:
        manifest = io.read_manifest(root)
        config = config_from_json(manifest["config"])
    except (io.DatasetError, ConfigError, KeyError) as exc:
        report.fail("manifest", str(exc))
        return report
    if not manifest.get("complete"):
        tasks = plan_shards(config)
        present = sum((root / t.relpath).is_file() for t in tasks)
        if present < len(tasks):
            report.fail(
                "manifest",
                f"{root}: unfinished dataset, {present} of {len(tasks)} shards present; rerun "
                f"`datagen generate {root}` with the same config to render the rest (finished shards are kept)",
            )
        else:
            report.fail(
                "manifest",
                f"{root}: all {len(tasks)} shards present but the manifest is not finalised "
                "(complete: false); run `datagen finalize`",
            )
        return report
    if manifest["palettes"]["sha256"] != palette_digest():
        report.fail(
            "palettes", "this matplotlib's colour tables differ from the ones the dataset was made with"
        )
    words = tuple(manifest["shape_words"])
    # Converted published data was not drawn by our sampler (and has no render seeds).
    check_sampler = manifest.get("origin", {}).get("type") != "published"
    total = sum(manifest["counts"].values())
    bar = Progress(total, "validate", "samples", enabled=progress)
    for split in config.splits:
        listed = {s["file"]: s for s in manifest.get("shards", {}).get(split, [])}
        on_disk = {f"{split}/{p.name}" for p in sorted((root / split).glob("shard-*.tar"))}
        for extra in sorted(on_disk - set(listed)):
            report.fail("shards", f"{extra}: on disk but not in the manifest")
        expected_index = 0
        for rel in sorted(listed):
            entry, path = listed[rel], root / rel
            if not path.is_file():
                report.fail("shards", f"{rel}: listed in the manifest but missing")
                continue
            if io.sha256_file(path) != entry["sha256"]:
                report.fail("sha256", f"{rel}: sha256 differs from the manifest")
            report.checked["shards"] += 1
            n = 0
            try:
                for rec in io.read_shard(path):
                    _check_sample(rec, rel, split, expected_index, config, words, report, check_sampler)
                    expected_index += 1
                    n += 1
                    bar.update(1)
            except io.DatasetError as exc:
                report.fail("decode", str(exc))
            if n != entry["count"]:
                report.fail("counts", f"{rel}: {n} samples, manifest says {entry['count']}")
        if expected_index != manifest["counts"][split]:
            report.fail(
                "counts", f"{split}: {expected_index} samples, manifest says {manifest['counts'][split]}"
            )
    return report


def _check_sample(
    rec, rel, split, expected_index, config, words, report: Report, check_sampler: bool
) -> None:
    where = f"{rel}:{rec['key']}"
    meta = rec["json"]
    report.checked["samples"] += 1
    if (
        meta.get("index") != expected_index
        or rec["key"] != f"{expected_index:06d}"
        or meta.get("split") != split
    ):
        report.fail(
            "order",
            f"{where}: expected {split} index {expected_index}, found index {meta.get('index')} key {rec['key']}",
        )
        return
    try:
        image = io.decode_png(rec["png"], where)
        r = config.render.resolution
        if image.shape != (r, r, 3):
            report.fail("image", f"{where}: image is {image.shape}, expected ({r}, {r}, 3)")
    except io.DatasetError as exc:
        report.fail("image", str(exc))
    design = design_of(config)
    for modality in ("image", "text"):
        cols = [f.name for f in design.factors_of(modality)]
        if sorted(meta.get(modality, {})) != sorted(cols):
            report.fail(
                "schema",
                f"{where}: {modality} latents have keys {sorted(meta.get(modality, {}))}, expected {cols}",
            )
            return
    img, txt = meta["image"], meta["text"]
    out_of_domain = False
    for f in design.factors:
        v = img.get(f.name, txt.get(f.name))
        if f.kind == "continuous" and not (
            isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0
        ):
            report.fail("domain", f"{where}: {f.name}={v!r} is not a number in [0, 1]")
            out_of_domain = True
        if f.kind == "discrete":
            n = design.n_values(f, len(config.shapes))
            if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v and (n is None or v < n)):
                report.fail("domain", f"{where}: {f.name}={v!r} not an integer in 0..{n - 1 if n else 'N'}")
                out_of_domain = True
    if out_of_domain:  # the checks below compute with the values
        return
    for f in design.factors:
        if len(f.modalities) == 2 and img[f.name] != txt[f.name]:
            report.fail(
                "shared", f"{where}: {f.name} differs between image ({img[f.name]}) and text ({txt[f.name]})"
            )
    expected = sample(config, split, expected_index, words) if check_sampler else None
    if expected is not None and (
        expected.image != img or expected.text != txt or expected.render_seed != meta.get("render_seed")
    ):
        report.fail(
            "sampler",
            f"{where}: latents differ from what the sampler draws for (seed {config.seed}, {split}, {expected_index})",
        )
    if design.toolbox and meta.get("scene") != json.loads(json.dumps(dataclasses.asdict(design.scene(img)))):
        report.fail(
            "scene", f"{where}: render-space values (scene) differ from the ones of its image latents"
        )
    report.checked["sentences"] += 1
    try:
        template, said = design.grammar.parse(rec["txt"])
    except ValueError as exc:
        report.fail("sentence", f"{where}: {exc}")
        return
    expected = design.fills(
        {**txt, **img}, words[txt["object_shape"]] if 0 <= txt["object_shape"] < len(words) else None
    )
    checks = {"text_phrasing": (template, txt["text_phrasing"])}
    checks.update({SLOT_CHECKS[slot]: (said[slot], expected[slot]) for slot in design.grammar.slots})
    for what, (got, want) in checks.items():
        if got != want:
            report.fail("sentence", f"{where}: sentence says {what} {got!r}, latents say {want!r}")
    try:
        palette = palette_by_name(meta.get("palette"))
        for name, rgb in design.named_colours(img):
            colour = txt[f"{name}_name"]
            if colour_index(colour) != txt[f"{name}_index"]:
                report.fail(
                    "colour", f"{where}: {name}_index {txt[f'{name}_index']} is not the index of {colour!r}"
                )
            nearest = nearest_rgb_name(rgb, palette)
            if nearest != colour:
                report.fail(
                    "colour",
                    f"{where}: {colour!r} is not the nearest {palette.name} name to {name} {img[name]:.4f} ({nearest!r} is)",
                )
    except ValueError as exc:
        report.fail("colour", f"{where}: {exc}")
    for e in design.edges:  # the interval rule at full strength puts the effect in the cause's bin
        if e.mechanism == "interval" and e.strength == 1:
            c, v = img[e.cause], img[e.effect]
            b = e.bin(c)
            if (
                e.effect in design.distributions
                and design.distributions[e.effect].kind == "uniform"
                and not (b / e.bins <= v < (b + 1) / e.bins)
            ):
                report.fail(
                    "hue" if e.effect == "object_color" else "edge",
                    f"{where}: edge {e.cause} -> {e.effect} (interval) needs {e.effect} in "
                    f"[{b}/{e.bins}, {b + 1}/{e.bins}), got {v:.4f}",
                )
