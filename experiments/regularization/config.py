"""Claim 5: regularization and augmentation with little data.

    python -m launch.sweep --config=experiments/regularization/config.py \
        --workdir_root=/tmp/regularization --results_dir=experiments/regularization --parallel=2 \
        --curves=train.accuracy,eval.accuracy --panels=train_split --last=train.accuracy
    python -m launch.sweep --config=experiments/regularization/config.py:fashion_mnist \
        --workdir_root=/tmp/regularization_fashion_mnist \
        --results_dir=experiments/regularization/fashion_mnist --parallel=2 \
        --curves=train.accuracy,eval.accuracy --panels=train_split --last=train.accuracy \
        --baseline=model_kwargs.dropout=0 --baseline=model_kwargs.batch_norm=False \
        --baseline=augment=

{no regularization, dropout 0.5, batch norm, both} x {augmentation off, on
(1-pixel shifts, 10-degree turns)} at 10%, 25% and 100% of the digits'
training split (143, 359 and 1,438 images), 3 seeds each: 72 runs of a
small template (3x3 convs with 16 and 32 filters, max pooling, fully
connected 64, then the output) at 16x16, Adam 3e-3 with a cosine decay over
300 steps of 64, eval every 30 steps. The train accuracy is measured on the
training batches as they are trained on (augmented, dropout on).
Hardware: 2 CPU cores. Expected: about 12 minutes in all (2 runs at a time);
unregularized 91.7 / 93.8 / 96.8% test at 10 / 25 / 100% of the data, batch
norm + augmentation 95.9 / 97.5 / 99.2% (experiments/regularization/README.md).

The second command asks the same on Fashion-MNIST at 28x28, at 1%, 10% and
100% of its training split (600, 6,000 and 60,000 images): {none, dropout
0.5, batch norm} x {augmentation off, on} x 3 fractions x 3 seeds, 54 runs
of the template with 8 and 16 filters, 600 steps of 64 each (64 epochs of
the 1% split, 0.64 of the full one), the 10,000 test images every 150
steps. Expected: about 18 minutes in all (2 runs at a time).
"""

from cnn_jax.sweep import config_files

GROUPS = ("digits", "fashion_mnist")

AUGMENT = "translate(pixels=1)|rotate(degrees=10)"


def get_config(group: str = "digits"):
  config_files.check_group(group, GROUPS)
  config = config_files.load_config("configs/default.py")
  config.model = "standard"
  config.model_kwargs = dict(
      widths=(16, 32),
      convs_per_stage=1,
      kernel_size=3,
      fc_widths=(64,),
      dropout=0.0,
      batch_norm=False,
  )
  config.image_size = 16
  config.augment = ""
  config.batch_size = 64
  config.num_train_steps = 300
  config.eval_every_steps = 30
  config.log_every_steps = 30
  config.schedule = dict(name="cosine", warmup_steps=0)
  if group == "fashion_mnist":
    config_files.on_mnist_like(config)
    config.model_kwargs.widths = (8, 16)
    config.num_train_steps = 600
    config.eval_every_steps = 150
  return config


def get_sweep(h, group: str = "digits"):
  if group == "fashion_mnist":
    regularization = h.zip(
        [
            h.sweep("model_kwargs.dropout", [0.0, 0.5, 0.0]),
            h.sweep("model_kwargs.batch_norm", [False, False, True]),
        ]
    )
    return h.product(
        [
            h.sweep("train_split", ["train[:1%]", "train[:10%]", "train"]),
            regularization,
            h.sweep("augment", ["", AUGMENT]),
            h.sweep("seed", [0, 1, 2]),
        ]
    )
  regularization = h.zip(
      [
          h.sweep("model_kwargs.dropout", [0.0, 0.5, 0.0, 0.5]),
          h.sweep("model_kwargs.batch_norm", [False, False, True, True]),
      ]
  )
  return h.product(
      [
          h.sweep("train_split", ["train[:10%]", "train[:25%]", "train"]),
          regularization,
          h.sweep("augment", ["", AUGMENT]),
          h.sweep("seed", [0, 1, 2]),
      ]
  )
