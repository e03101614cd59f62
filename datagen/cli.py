"""``datagen`` command line: assets, generate, finalize, convert, validate, preview.

``main(argv)`` takes an argument list so tests run each command in-process. Errors that a
user can fix print one sentence naming the file/key and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datagen import io
from datagen._bpy import BlenderUnavailable
from datagen.config import SPLITS, ConfigError, load_config, make_config
from datagen.meshes import MeshError
from datagen.render import RenderError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    MeshError,
    io.DatasetError,
    BlenderUnavailable,
    RenderError,
)


def _parse_counts(text: str) -> dict[str, int]:
    parts = text.split("/")
    if len(parts) != len(SPLITS):
        raise ConfigError(f"--counts {text!r}: expected train/val/test, e.g. 64/16/16")
    try:
        counts = dict(zip(SPLITS, (int(p) for p in parts)))
    except ValueError:
        raise ConfigError(f"--counts {text!r}: expected integers, e.g. 64/16/16") from None
    for split, n in counts.items():
        if n < 1:
            raise ConfigError(f"--counts {text!r}: {split} count must be a positive integer, got {n}")
    return counts


def _config_from_args(args) -> DatasetConfig:  # noqa: F821
    base = load_config(args.config).to_json() if args.config else {}
    over: dict = {}
    if args.preset:
        over["preset"] = args.preset
        base.pop("render", None)  # a new preset replaces the file's render settings
    for key in ("seed", "shard_size", "colour_mode", "hue_mode"):
        value = getattr(args, key)
        if value is not None:
            over[key] = value
    if args.counts:
        over["counts"] = _parse_counts(args.counts)
    if args.shapes:
        over["shapes"] = [s.strip() for s in args.shapes.split(",") if s.strip()]
    render = dict(base.pop("render", {}) or {})
    for key in ("resolution", "samples"):
        value = getattr(args, key)
        if value is not None:
            render[key] = value
    if args.denoise is not None:
        render["denoise"] = args.denoise
    data = {**base, **over}
    if render:
        data["render"] = render
    return make_config(data, where=str(args.config) if args.config else "command line")


def cmd_assets(args) -> int:
    from datagen import meshes

    root = Path(args.root) if args.root else None
    if args.action == "register":
        if not args.name or not args.file:
            raise MeshError("usage: datagen assets register NAME FILE [--word WORD] [--object NAME]")
        entry = meshes.register(args.name, Path(args.file), root, args.word, args.object)
        print(f"registered {args.name!r} ({entry['n_vertices']} vertices, sentences say {entry['word']!r})")
        return 0
    if args.action == "list":
        lib = meshes.load_library(root)
        print(f"mesh library {lib.root}")
        for name, e in sorted(lib.entries.items()):
            sub = f" (stands in for {e['substitute_for']})" if e.get("substitute_for") else ""
            print(f"  {name:12s} word={e['word']!r:14s} {e['n_vertices']:6d} vertices{sub}  <- {e['source']}")
        return 0
    meshes.build_library(root, force=args.force, deb_dir=Path(args.deb_dir) if args.deb_dir else None)
    return 0


def cmd_generate(args) -> int:
    from datagen.pipeline import GenerateError, generate

    config = _config_from_args(args)
    try:
        generate(
            config,
            Path(args.root),
            workers=args.workers,
            shards=args.shards,
            overwrite=args.overwrite,
            device=args.device,
            mesh_root=Path(args.mesh_root) if args.mesh_root else None,
            backend=args.backend,
            ray_address=args.ray_address,
            progress=not args.quiet,
        )
    except GenerateError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def cmd_finalize(args) -> int:
    from datagen.pipeline import GenerateError, finalize

    try:
        manifest = finalize(Path(args.root))
    except GenerateError as exc:
        raise io.DatasetError(str(exc)) from None
    print(f"finalized {args.root}: {sum(manifest['counts'].values())} samples")
    return 0


def cmd_validate(args) -> int:
    from datagen.validate import validate

    report = validate(Path(args.root), progress=not args.quiet)
    text = report.text()
    print(text)
    if args.report:
        io.atomic_write_text(Path(args.report), text + "\n")
    if report.ok:
        return 0
    first = next(iter(report.failures.values()))[0]
    print(
        f"datagen validate: error: {report.n_failures} problem(s) in {args.root}; first: {first}",
        file=sys.stderr,
    )
    return 2


def cmd_convert(args) -> int:
    from datagen import convert

    src = Path(args.src)
    try:
        if (src / io.MANIFEST).is_file():
            convert.shards_to_published(src, Path(args.dst), progress=not args.quiet)
        else:
            convert.published_to_shards(
                src,
                Path(args.dst),
                shard_size=args.shard_size,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
    except convert.ConvertError as exc:
        raise io.DatasetError(str(exc)) from None
    return 0


def cmd_preview(args) -> int:
    from datagen.preview import contact_sheet, read_samples

    records = read_samples(Path(args.root), args.split, args.n)
    out = contact_sheet(
        records,
        Path(args.out or Path(args.root) / f"contact_sheet_{args.split}.png"),
        columns=args.columns,
        title=args.title,
    )
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="datagen", description="Multimodal3DIdent dataset generator")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("assets", help="build the mesh library or register your own meshes")
    a.add_argument("action", nargs="?", choices=["build", "register", "list"], default="build")
    a.add_argument("name", nargs="?", help="register: class name, e.g. horse")
    a.add_argument("file", nargs="?", help="register: .obj/.ply/.off/.stl/.blend file")
    a.add_argument("--word", help="register: the word sentences use (default: the name)")
    a.add_argument("--object", help="register: object name inside a .blend file")
    a.add_argument("--root", help="library folder (default $MMCL3D_CACHE/meshes or ~/.cache/mmcl3d/meshes)")
    a.add_argument("--force", action="store_true", help="rebuild the default classes")
    a.add_argument("--deb-dir", help="folder with libcgal-demo_*.deb and blender-data_*.deb (offline)")
    a.set_defaults(func=cmd_assets)

    g = sub.add_parser("generate", help="render a dataset into webdataset shards")
    g.add_argument("root", help="output folder (ROOT/manifest.json, ROOT/{train,val,test}/shard-*.tar)")
    g.add_argument("--config", help="dataset YAML (configs/datagen/*.yaml); flags below override it")
    g.add_argument("--preset", choices=["reference", "default", "draft"])
    g.add_argument("--counts", help="train/val/test sample counts, e.g. 64/16/16")
    g.add_argument("--seed", type=int)
    g.add_argument("--shard-size", type=int, dest="shard_size")
    g.add_argument("--colour-mode", choices=["causal", "independent"], dest="colour_mode")
    g.add_argument("--hue-mode", choices=["upstream", "wrap"], dest="hue_mode")
    g.add_argument("--shapes", help="comma-separated class names from the mesh library, in index order")
    g.add_argument("--resolution", type=int)
    g.add_argument("--samples", type=int, help="Cycles samples per pixel")
    g.add_argument("--denoise", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--workers", type=int, default=1, help="render processes (each builds the scene once)")
    g.add_argument("--shards", help="render only shard tasks i:j (independent jobs, e.g. a SLURM array)")
    g.add_argument("--overwrite", action="store_true", help="replace a dataset made with another config")
    g.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    g.add_argument("--backend", choices=["local", "ray"], default="local")
    g.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    g.add_argument("--mesh-root", help="mesh library folder")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_generate)

    f = sub.add_parser("finalize", help="check all shards and complete the manifest (after --shards jobs)")
    f.add_argument("root")
    f.set_defaults(func=cmd_finalize)

    c = sub.add_parser("convert", help="published layout <-> shards (direction from SRC)")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--shard-size", type=int, default=1000, dest="shard_size")
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("validate", help="check a dataset; non-zero exit on any failure")
    v.add_argument("root")
    v.add_argument("--report", help="also write the report to this file")
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=cmd_validate)

    pv = sub.add_parser("preview", help="contact sheet PNG of N samples with their sentences")
    pv.add_argument("root")
    pv.add_argument("--split", default="train")
    pv.add_argument("-n", type=int, default=16)
    pv.add_argument("--columns", type=int, default=4)
    pv.add_argument("--title")
    pv.add_argument("--out", help="PNG path (default ROOT/contact_sheet_SPLIT.png)")
    pv.set_defaults(func=cmd_preview)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"datagen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
