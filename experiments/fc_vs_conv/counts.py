"""The lecture's parameter counts for fully connected layers, from cnn_jax.geometry.

python experiments/fc_vs_conv/counts.py
"""

from cnn_jax import geometry


def main():
  print(
      "one neuron fully connected to a 32x32x3 image (CIFAR-10): "
      f"{geometry.dense_params((32, 32, 3)):,} parameters"
  )
  print(
      "one neuron fully connected to a 200x200x3 image: "
      f"{geometry.dense_params((200, 200, 3)):,} parameters"
  )
  print(
      "a layer of 256 such neurons: "
      f"{geometry.dense_params((200, 200, 3), neurons=256):,} parameters"
  )
  conv = geometry.conv_layer_counts(200, 3, kernel=5, stride=1, padding=2, filters=256)
  print(
      "256 5x5 filters sliding over the same image (stride 1, 'same' padding): "
      f"{conv['params_with_sharing']:,} parameters for {conv['neurons']:,} neurons"
  )


if __name__ == "__main__":
  main()
