"""The ``diffprior`` command line.

Each sub-command lives in its own function; expected failures (missing file, bad option)
print one line to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys


class CLIError(Exception):
    """An expected, user-facing failure: printed as one line."""


def _add_train(sub):
    p = sub.add_parser("train", help="train the small bundled latent diffusion prior")
    tsub = p.add_subparsers(dest="stage", required=True)
    v = tsub.add_parser("vae", help="stage 1: the autoencoder (resumes from OUT if a checkpoint exists)")
    v.add_argument("--data", required=True, help="dataset: image folder, .tar(.gz) or .h5")
    v.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    v.add_argument("--steps", type=int, default=None, help="total optimisation steps (default: config)")
    v.add_argument("--batch", type=int, default=None, help="batch size (default: config)")
    v.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(func=_train_vae)
    u = tsub.add_parser("ldm", help="stage 2: UNet + text encoder on the autoencoder's latents")
    u.add_argument("--data", required=True, help="dataset: image folder, .tar(.gz) or .h5")
    u.add_argument("--vae", required=True, help="run folder of the trained autoencoder")
    u.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    u.add_argument("--steps", type=int, default=None, help="total optimisation steps (default: config)")
    u.add_argument("--batch", type=int, default=None, help="batch size (default: config)")
    u.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in this call")
    u.add_argument("--seed", type=int, default=0)
    u.set_defaults(func=_train_ldm)
    e = tsub.add_parser("export", help="write the trained prior as a diffusers-layout folder")
    e.add_argument("--vae", required=True, help="run folder of the trained autoencoder")
    e.add_argument("--ldm", required=True, help="run folder of the trained UNet + text encoder")
    e.add_argument("--out", required=True, help="destination folder")
    e.set_defaults(func=_train_export)


def _override(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **{k: v for k, v in kw.items() if v is not None})


def _train_vae(args):
    from .train.vae import VAETrainConfig, run_vae

    cfg = _override(VAETrainConfig(), steps=args.steps, batch_size=args.batch, seed=args.seed)
    run_vae(args.data, args.out, cfg, max_steps=args.max_steps)


def _train_ldm(args):
    from .train.ldm import LDMTrainConfig, run_ldm

    cfg = _override(LDMTrainConfig(), steps=args.steps, batch_size=args.batch, seed=args.seed)
    run_ldm(args.data, args.vae, args.out, cfg, max_steps=args.max_steps)


def _train_export(args):
    from .train.export import export_prior

    path = export_prior(args.vae, args.ldm, args.out)
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffprior", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"diffprior {__version__}"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CLIError, FileNotFoundError, ValueError, TypeError, OSError) as e:
        print(f"diffprior {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffprior {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
