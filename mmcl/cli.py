"""``mmcl`` command line: a thin dispatcher to each stage's own ``main(argv)``.

Subcommands import their module only when called, so ``mmcl probe`` never pays for Lightning
and ``mmcl simulate`` never needs the shards.

A user error that reaches this level -- bad data (a corrupt sample, found while training), a
bad config value, a missing file, a refused or incompatible checkpoint -- is printed as one
sentence ``mmcl COMMAND: error: ...`` with exit status 2, also when it was raised inside a
DataLoader worker (whose traceback torch folds into the message). Anything else is a bug and
keeps its traceback; ``MMCL_DEBUG=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("mmcl.train.cli", "train image/text encoders with symmetric InfoNCE (LightningCLI)"),
    "embed": ("mmcl.embed", "encode splits with a checkpoint, write embeddings + latents"),
    "probe": ("mmcl.probing.cli", "linear / nonlinear probes of every factor (SPEC 4)"),
    "sweep": ("mmcl.sweep", "encoding-size x seed sweeps, Fig. 8.3 / 8.4 plots"),
    "simulate": ("mmcl.simulation.cli", "numerical simulation of Table 8.1"),
    "dmvae": ("mmcl.dmvae.cli", "DMVAE: fit / generate / eval (seed 003 ch. 9)"),
}


def usage(prog: str = "mmcl", commands: dict[str, tuple[str, str]] = COMMANDS) -> str:
    lines = [f"usage: {prog} COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:10s} {help_}" for name, (_, help_) in commands.items()]
    lines += ["", f"`{prog} COMMAND --help` shows a command's options."]
    return "\n".join(lines)


# the errors a user can fix: this project's own (DataError, CorruptSample, CheckpointError,
# DMVAEError, ... all derive from ValueError, as do the config checks) and files that are not there
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    IsADirectoryError,
    PermissionError,
)


def user_error_sentence(exc: BaseException) -> str:
    """The one-sentence message of ``exc``; for an error re-raised from a DataLoader worker the
    original message (torch prepends "Caught X in DataLoader worker process N" and the traceback)."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or text}"
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        name = type(exc).__name__
        text = last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):  # jsonargparse: 'Parser key "k":' + the reason
        return f"{lines[0]} {lines[1]}"
    return lines[0] if lines else type(exc).__name__


def user_error(command: str, exc: BaseException) -> int:
    """Print ``exc`` as ``COMMAND: error: <one sentence>`` and return exit status 2; with
    ``MMCL_DEBUG`` set, re-raise it (the traceback) instead."""
    if os.environ.get("MMCL_DEBUG"):
        raise exc
    print(f"{command}: error: {user_error_sentence(exc)} (MMCL_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 2


def renamed_flags(argv: list[str], renamed: dict[str, str], prog: str) -> list[str]:
    """``argv`` with each old flag spelling (``renamed``'s keys, also as ``--old=value``) replaced
    by the current one; prints one deprecation line per old spelling used."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if flag in renamed:
            print(f"{prog}: {flag} is deprecated, use {renamed[flag]}", file=sys.stderr)
            arg = renamed[flag] + eq + value
        out.append(arg)
    return out


def config_parser(prog: str, description: str):
    """The parser of every command that reads a YAML config besides LightningCLI's own: jsonargparse
    with ``--config FILE`` (a later ``--key VALUE`` wins over the file), raising its
    ``ArgumentError`` instead of exiting, so that :func:`user_error` makes it one sentence."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    p.add_argument(
        "--config", action=ActionConfigFile, help="YAML config; any key can also be given as --key VALUE"
    )
    return p


def parse_config_args(parser, argv: list[str], what: str):
    """``parser.parse_args(argv)`` of a :func:`config_parser`; any parse error is a ``ValueError``
    (one of :data:`USER_ERRORS`) with jsonargparse's sentence, and a key of a ``--config`` file
    that ``parser`` does not know names the file (jsonargparse names only the key)."""
    from jsonargparse import ArgumentError

    try:
        return parser.parse_args(argv)
    except ArgumentError as exc:
        files = [a for flag, a in zip(argv, argv[1:]) if flag == "--config"]
        files += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
        if files and "is not accepted" in str(exc):  # a key of the YAML file, not of the command line
            raise ValueError(f"{files[-1]}: {user_error_sentence(exc)} as a {what} config key") from None
        raise ValueError(user_error_sentence(exc)) from None


def dispatch(prog: str, commands: dict[str, tuple[str, str]], argv: list[str] | None = None) -> int:
    """Run ``commands[argv[0]]``'s module ``main(argv[1:])``; user errors become one sentence."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(prog, commands))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: unknown command {name!r}\n\n{usage(prog, commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    try:
        return int(module.main(rest) or 0)
    except USER_ERRORS as exc:
        return user_error(f"{prog} {name}", exc)


def main(argv: list[str] | None = None) -> int:
    return dispatch("mmcl", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
