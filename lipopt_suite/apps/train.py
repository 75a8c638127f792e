"""`lipopt train`: train a classifier under a Lipschitz regulariser and write it (the
canonical .npz with its test data) and the record of the run (.json beside it)."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from ..harness.regularisers import REGULARISERS
from ..harness.trainer import MODELS, train, write_run


def _ints(text: str, what: str) -> list[int]:
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not out:
        raise InputError(f"{what} is empty")
    return out


def cli_configure(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(REGULARISERS)
    parser.add_argument("--regulariser", default="none", metavar="NAME",
                        help=f"one of {names} (default none)")
    parser.add_argument("--strength", type=float, default=None,
                        help="the budget K (spectral, projection-*, bjorck), the clip value "
                        "(clipping) or the penalty weight (weight-decay, *-penalty, "
                        "adversarial-lipschitz); default: the regulariser's")
    parser.add_argument("--target", type=float, default=1.0,
                        help="the constant the Lipschitz penalties aim at (default 1)")
    parser.add_argument("--model", default="mlp", choices=MODELS,
                        help="an MLP (default) or the suite's digits CNN")
    parser.add_argument("--hidden", default=None,
                        help="hidden widths of the MLP, e.g. 32,32 (default 20,20)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's step (default 3e-3)")
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--data", default=None, metavar="FILE.npz",
                        help="X (rows) and y (labels 0, 1, ...), optionally X_test, y_test "
                        "(default: scikit-learn's 8x8 digits)")
    parser.add_argument("--out", required=True, metavar="FILE.npz",
                        help="the trained network; the run goes to FILE.json")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the run as one JSON object")


def cli_run(args: argparse.Namespace) -> int:
    if not args.out.lower().endswith(".npz"):
        raise InputError(f"--out {args.out}: the trained network is written as .npz")
    hidden = _ints(args.hidden, "--hidden") if args.hidden is not None else None
    run = train(args.regulariser, args.strength, model=args.model, hidden=hidden,
                data=args.data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                seed=args.seed, device=args.device, target=args.target,
                progress=not args.no_progress and sys.stderr.isatty())
    npz, info = write_run(run, args.out)
    if args.json:
        from ..bound import to_jsonable

        print(json.dumps({"net": str(npz), "run": str(info), **to_jsonable(run.info)}))
        return 0
    i = run.info
    est = i["estimate"]
    print(f"{npz}: {run.net.describe()}, {i['regulariser']} (strength {i['strength']:g}), "
          f"test accuracy {i['test_accuracy']:.4f}, train accuracy {i['train_accuracy']:.4f}")
    print(f"  the regulariser's own value of the constant: {est['value']:.6g} "
          f"({est['what']}; {'guaranteed' if est['guaranteed'] else 'an estimate'})")
    print(f"  run: {info}")
    return 0
