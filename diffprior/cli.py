"""The ``diffprior`` command line.

Sub-commands: ``simulate``, ``solve`` and ``report`` (the HDF5 workflow, one module each in
:mod:`diffprior.commands`) and ``train`` (the bundled prior). Every failure prints one line
to stderr and exits non-zero, never a traceback: usage errors and expected failures (missing
file, unknown option value, a file of a newer schema, an incomplete prior folder) exit with
status 2, unexpected errors with 1, Ctrl-C with 130. ``diffprior --debug COMMAND ...`` (or the
environment variable ``DIFFPRIOR_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import DiffpriorError

#: At most this many characters of an error message are printed (it is kept to one line).
MAX_MESSAGE = 1000


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``prog: error: message``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_train(sub):
    p = sub.add_parser("train", help="train the small bundled latent diffusion prior, or a small pixel-space DDPM")
    tsub = p.add_subparsers(dest="stage", required=True)
    v = tsub.add_parser("vae", help="stage 1: the autoencoder (resumes from OUT if a checkpoint exists)")
    v.add_argument("--data", required=True, help="dataset: image folder, .tar(.gz) or .h5")
    v.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    v.add_argument("--steps", type=int, default=None, help="total optimisation steps (default: config)")
    v.add_argument("--batch", type=int, default=None, help="batch size (default: config)")
    v.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    v.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    v.add_argument("--init", default=None, metavar="RUN",
                   help="start from the weights of another stage-1 run folder (all weights, or the decoder with --decoder-only)")
    v.add_argument("--decoder-only", action="store_true",
                   help="train only the decoder; the encoder, hence the latents, stay unchanged")
    v.set_defaults(func=_train_vae)
    u = tsub.add_parser("ldm", help="stage 2: UNet + text encoder on the autoencoder's latents")
    u.add_argument("--data", required=True, help="dataset: image folder, .tar(.gz) or .h5")
    u.add_argument("--vae", required=True, help="run folder of the trained autoencoder")
    u.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    u.add_argument("--steps", type=int, default=None, help="total optimisation steps (default: config)")
    u.add_argument("--batch", type=int, default=None, help="batch size (default: config)")
    u.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    u.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    u.add_argument("--init", default=None, metavar="RUN",
                   help="start from the UNet and text encoder of another stage-2 run folder (fine-tuning "
                        "onto a changed autoencoder's latents)")
    u.set_defaults(func=_train_ldm)
    e = tsub.add_parser("export", help="write the trained prior as a diffusers-layout folder")
    e.add_argument("--vae", required=True, help="run folder of the trained autoencoder")
    e.add_argument("--ldm", required=True, help="run folder of the trained UNet + text encoder")
    e.add_argument("--out", required=True, help="destination folder")
    e.add_argument("--quality", default=None, metavar="JSON",
                   help="validation results of benchmarks/prior_quality.py to put in the model card")
    e.add_argument("--preset-table", default="cifar10", metavar="TABLE",
                   help="the solver preset table written into the prior's metadata (diffprior.json): cifar10 "
                        "(the values searched for a CIFAR-10 prior; default), imagenet, ffhq, or none (the "
                        "paper's general-domain presets)")
    e.set_defaults(func=_train_export)
    x = tsub.add_parser("pixel", help="a small pixel-space DDPM (UNet2DModel, epsilon prediction) on the images "
                        "themselves (resumes from OUT if a checkpoint exists)")
    x.add_argument("--data", required=True, help="dataset: image folder, .tar(.gz) or .h5")
    x.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    x.add_argument("--steps", type=int, default=None, help="total optimisation steps (default: config)")
    x.add_argument("--batch", type=int, default=None, help="batch size (default: config)")
    x.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    x.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    x.add_argument("--init", default=None, metavar="PATH",
                   help="start from these weights (fresh optimiser, step 0): another pixel run folder or an exported "
                        "pixel prior, e.g. to continue training on another machine or in a later session")
    x.set_defaults(func=_train_pixel)
    xe = tsub.add_parser("export-pixel", help="write a trained pixel DDPM as a diffusers-layout folder "
                         "(DDPMPipeline: unet/ scheduler/), with its model card and samples")
    xe.add_argument("--pixel", required=True, help="run folder of the trained pixel DDPM")
    xe.add_argument("--out", required=True, help="destination folder")
    xe.add_argument("--preset-table", default="cifar10", metavar="TABLE",
                    help="the solver preset table written into the prior's metadata (diffprior.json); as for "
                         "'train export' (default cifar10)")
    xe.add_argument("--samples", type=int, default=64,
                    help="DDIM samples drawn for samples.png (default 64; 0: none)")
    xe.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the samples (default 50)")
    xe.set_defaults(func=_train_export_pixel)


def _override(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **{k: v for k, v in kw.items() if v is not None})


def _train_vae(args):
    from .train.vae import VAETrainConfig, run_vae

    cfg = _override(VAETrainConfig(), steps=args.steps, batch_size=args.batch, seed=args.seed,
                    decoder_only=args.decoder_only or None)
    run_vae(args.data, args.out, cfg, max_steps=args.max_steps, init_from=args.init)


def _train_ldm(args):
    from .train.ldm import LDMTrainConfig, run_ldm

    cfg = _override(LDMTrainConfig(), steps=args.steps, batch_size=args.batch, seed=args.seed)
    run_ldm(args.data, args.vae, args.out, cfg, max_steps=args.max_steps, init_from=args.init)


def _train_pixel(args):
    from .train.pixel import PixelTrainConfig, run_pixel

    cfg = _override(PixelTrainConfig(), steps=args.steps, batch_size=args.batch, seed=args.seed)
    run_pixel(args.data, args.out, cfg, max_steps=args.max_steps, init_from=args.init)


def _commands(lines) -> dict:
    """The command lines of ``commands.txt`` entries (their time stamps cut), in order, once each."""
    return {line[20:]: line[20:] for line in lines}


def _train_export_pixel(args):
    import json

    from .commands import CLIError
    from .train.card import write_pixel_card
    from .train.export import export_pixel_prior

    if args.samples < 0 or args.sample_steps < 1:
        raise CLIError(f"--samples must be >= 0 and --sample-steps >= 1, got {args.samples} and "
                            f"{args.sample_steps}")
    table = None if args.preset_table.lower() == "none" else args.preset_table
    path = export_pixel_prior(args.pixel, args.out, preset_table=table, samples=args.samples,
                              sample_steps=args.sample_steps)
    # every run of the chain, those of earlier machines or sessions included (kept in training.json)
    commands = _commands(json.loads((path / "training.json").read_text())["commands"])
    card = write_pixel_card(path, args.pixel, commands=commands)
    print(f"wrote {path} and {card}")


def _train_export(args):
    from .train.card import write_card
    from .train.export import command_lines, export_prior, lineage

    table = None if args.preset_table.lower() == "none" else args.preset_table
    path = export_prior(args.vae, args.ldm, args.out, preset_table=table)
    # every run of both stages, fine-tuning starts included
    commands = _commands(command_lines(st["path"] for name, run in (("vae", args.vae), ("ldm", args.ldm))
                                       for st in lineage(run, name)))
    card = write_card(path, args.vae, args.ldm, quality_json=args.quality, commands=commands)
    print(f"wrote {path} and {card}")


def build_parser() -> argparse.ArgumentParser:
    """The ``diffprior`` argument parser with all sub-commands."""
    from .commands import demo, merge, report, simulate, solve

    parser = _Parser(prog="diffprior", description="Latent-diffusion priors for imaging inverse problems: "
                     "simulate problems, solve them, report the results, train the bundled prior.",
                     epilog="workflow:\n  diffprior simulate images/ --task sr4 --out problems.h5\n"
                     "  diffprior solve problems.h5 --solver p2l --out results.h5\n"
                     "  diffprior report results.h5 --figure comparison.png\n\n"
                     "'diffprior COMMAND --help' documents each command's options.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the library version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    simulate.add_parser(sub)
    solve.add_parser(sub)
    merge.add_parser(sub)
    report.add_parser(sub)
    _add_train(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"diffprior {__version__}"


def _command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub-)parser of the command that `args` selected."""
    for name in ("command", "stage"):
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        value = getattr(args, name, None)
        if sub is None or value not in sub.choices:
            break
        parser = sub.choices[value]
    return parser


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """Collapse a (possibly multi-line) message to one line of at most `limit` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 40].rstrip() + " ... (--debug for the full message)"


#: Errors that a user can meet and fix (exit status 2): the library's own user errors
#: (:class:`diffprior.errors.DiffpriorError`: files, folders, weights, images, configuration,
#: and the commands' :class:`CLIError`) and the operating system's (missing or unreadable
#: files, a full disk). Anything else -- a ``TypeError`` or ``ValueError`` from inside the
#: library included -- is a bug and is reported as one.
EXPECTED_ERRORS = (DiffpriorError, OSError)


def main(argv=None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # report them against the sub-command they were given to
            _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, --version and usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    debug = args.debug or os.environ.get("DIFFPRIOR_DEBUG", "") not in ("", "0")
    prog = f"diffprior {args.command}"
    try:
        if args.command in ("demo", "solve", "train"):
            from . import enable_compilation_cache

            enable_compilation_cache()
        args.func(args)
    except KeyboardInterrupt:
        hint = " (finished samples are saved: rerun the same command to resume)" if args.command == "solve" else ""
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except Exception as e:  # noqa: BLE001 -- never a traceback without --debug
        if debug:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {one_line(e)} (rerun with --debug for the "
              "traceback and please report it)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
