"""A convolutional VAE on Frey faces (28x20): test ELBO and IS log-likelihood, samples, traversal.

Trains `vaelab train --data frey-faces --arch conv` (and, for comparison, the MLP of the same
dataset defaults at the same epochs), evaluates both on the 400 held-out faces, and keeps the
conv run's samples.png and a latent traversal (`vaelab traverse RUN --dims top:5`).
Frey faces are grey levels in [0, 1] with a Gaussian likelihood, so log p(x) is a density
(nats; positive values are possible).

    python benchmarks/family_frey.py --epochs 100
"""

from __future__ import annotations

import family_common as common

from vaelab.cli import build_parser
from vaelab.cli import main as vaelab_main
from vaelab.cli.train import build_config


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--eval-k", type=int, default=1000)
    p.add_argument("--likelihood", default=None, help="default: the dataset's (gaussian, 0.1)")
    args = p.parse_args()
    runs, results = common.setup(args, "frey")
    rows = {}
    for arch in ("conv", "mlp"):
        flags = ["--data", "frey-faces", "--data-dir", args.data_dir, "--arch", arch,
                 "--epochs", str(args.epochs), "--seed", str(args.seed)]
        if arch == "conv":
            flags += ["--channels", "32,64"]
        if args.likelihood:
            flags += ["--likelihood", args.likelihood]
        config, d = build_config(build_parser().parse_args(["train", *flags]))
        result = common.train(config, runs / arch, d, args.device)
        rows[arch] = common.test_numbers(result, d, k=args.eval_k)
        rows[arch]["train_seconds"] = round(result.seconds, 1)
        rows[arch]["model"] = {k: getattr(config.model, k) for k in
                               ("arch", "latent_dim", "hidden", "channels", "likelihood",
                                "obs_scale")}
    conv = runs / "conv"
    assert vaelab_main(["traverse", str(conv), "--dims", "top:5", "--out",
                        str(conv / "traverse.png")]) == 0
    print(f"\n{'arch':<6} {'test ELBO':>10} {'test log p(x)':>20} {'-log p':>9} {'active':>7} "
          f"{'seconds':>8}")
    for arch, r in rows.items():
        print(f"{arch:<6} {r['elbo']:>10.2f} {r['log_p']:>12.2f} +- "
              f"{r['log_p_sem']:.2f} {-r['log_p']:>9.2f} "
              f"{r['active_units']:>7} {r['train_seconds']:>8}")
    print(f"(400 test faces; {rows['conv']['quantity']}, IS with k={args.eval_k}; {args.epochs} epochs each)")
    common.keep(results, {"args": vars(args), "results": rows},
                conv / "samples.png", conv / "traverse.png", conv / "reconstructions.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
