"""The per-layer summary: exact counts, published MACs, and the CLI."""

import os
import subprocess

import pytest

from cnn_jax import models, summary
from cnn_jax.train import train_and_evaluate
from helpers import python, tiny_config


def _summarize(name):
  spec = models.spec(name)
  return summary.summarize(models.create(name), (spec.image_size, spec.image_size, spec.channels))


def test_lenet5_matches_the_paper():
  s = _summarize("lenet5")
  assert s.total_params == 60_000
  assert s.total_connections == 340_908
  by_name = {r.name: r for r in s.rows}
  # The paper's per-layer figures (Section II.B).
  assert by_name["C1"].output_shape == (28, 28, 6) and by_name["C1"].connections == 122_304
  assert by_name["S2"].params == 12 and by_name["S2"].connections == 5_880
  assert by_name["C3"].params == 1_516 and by_name["C3"].connections == 151_600
  assert by_name["S4"].params == 32 and by_name["S4"].connections == 2_000
  assert by_name["C5"].params == 48_120 and by_name["C5"].connections == 48_120
  assert by_name["F6"].params == 10_164 and by_name["F6"].connections == 10_164
  assert by_name["output"].connections == 840


def test_lenet1_and_lenet4_match_their_published_totals():
  # LeNet-1: LeCun et al. 1990's 2,578 parameters and 98,442 connections exactly.
  lenet1 = _summarize("lenet1")
  assert (lenet1.total_params, lenet1.total_connections) == (2_578, 98_442)
  assert [r.output_shape for r in lenet1.rows if r.name in ("C1", "S2", "C3", "S4")] == [
      (24, 24, 4),
      (12, 12, 4),
      (8, 8, 12),
      (4, 4, 12),
  ]
  # LeNet-4: the paper's "about 17,000" parameters and "about 260,000" connections.
  lenet4 = _summarize("lenet4")
  assert (lenet4.total_params, lenet4.total_connections) == (18_098, 269_306)
  by_name = {r.name: r for r in lenet4.rows}
  assert by_name["S2"].output_shape == (14, 14, 8) and by_name["C5"].output_shape == (1, 1, 120)


def test_rows_add_up_to_the_totals():
  for name in ("googlenet", "resnet20", "alexnet"):
    s = _summarize(name)
    assert sum(r.params for r in s.rows) == s.total_params
    assert sum(r.macs for r in s.rows) == s.total_macs


@pytest.mark.parametrize(
    "name,published_gmacs",
    [("resnet18", 1.814), ("resnet50", 4.089), ("vgg_d", 15.47), ("alexnet_tv", 0.714)],
)
def test_macs_match_published_figures(name, published_gmacs):
  assert _summarize(name).total_macs / 1e9 == pytest.approx(published_gmacs, rel=0.02)


def test_alexnet_first_layer_row():
  row = _summarize("alexnet").rows[0]
  assert (row.name, row.output_shape, row.params) == ("conv1", (55, 55, 96), 34_944)
  assert row.macs == 55 * 55 * 96 * 11 * 11 * 3
  assert "55x55x96" in _summarize("alexnet").table()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "resnet9"], "unknown model 'resnet9'"),
        (["--model", "alexnet", "--image_size", "224"], "layer 'conv1'"),
    ],
)
def test_cli_errors_are_one_line(args, message):
  out = subprocess.run(
      [python(), "-m", "cnn_jax.summary", *args],
      capture_output=True,
      text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert out.returncode != 0 and message in out.stderr
  assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


def test_cli_prints_the_vgg16_table():
  out = subprocess.run(
      [python(), "-m", "cnn_jax.summary", "--model", "vgg_d", "--image_size", "224"],
      capture_output=True,
      text=True,
      check=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert "total parameters: 138,357,544" in out.stdout
  assert "conv5_3" in out.stdout and "7x7x512" in out.stdout


def test_a_training_run_prints_the_table_of_the_trace_that_created_its_state(
    tmp_path, capsys, monkeypatch
):
  # The run records the layer calls while it traces its state's creation:
  # one trace of the model instead of two, and the table is summarize's.
  config = tiny_config(num_train_steps=1, eval_every_steps=1)
  model = models.create(config.model, num_classes=10, **config.model_kwargs)
  expected = summary.summarize(model, (8, 8, 1)).table()
  assert "BatchNorm" in expected and "total MACs" in expected
  traced_again = []
  monkeypatch.setattr(summary, "summarize", lambda *a: traced_again.append(a))
  for run in ("first", "second"):
    train_and_evaluate(config, str(tmp_path / run))
    assert f"{expected}\n" in capsys.readouterr().out, run
  assert not traced_again
