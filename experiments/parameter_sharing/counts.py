"""The lecture's parameter-sharing example (AlexNet's first layer), from cnn_jax.geometry.

python experiments/parameter_sharing/counts.py
"""

from cnn_jax import geometry


def main():
  counts = geometry.conv_layer_counts(227, 3, kernel=11, stride=4, padding=0, filters=96)
  print(
      f"AlexNet conv1 on 227x227x3, 96 filters 11x11, stride 4: output "
      f"{'x'.join(map(str, counts['output_shape']))} = {counts['neurons']:,} neurons, "
      f"{counts['params_per_neuron']:,} parameters each"
  )
  print(f"without sharing: {counts['params_without_sharing']:,} parameters")
  print(f"with sharing (one filter per depth slice): {counts['params_with_sharing']:,} parameters")


if __name__ == "__main__":
  main()
