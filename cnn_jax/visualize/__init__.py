"""See what a trained network learned (the lecture's visualization part).

probe.py           read or perturb any named layer of a model
features.py        conv kernels, feature maps, receptive fields, top-activating patches
occlusion.py       Zeiler & Fergus occlusion sensitivity
attribution.py     gradients, SmoothGrad, integrated gradients, guided backprop,
                   deconvnet, Grad-CAM
activation_max.py  activation maximization with lucid's Fourier parameterization
sanity.py          Adebayo et al.'s model-randomization test
trained.py         a trained model from a training workdir
plots.py           PNG grids and heatmap overlays
gallery.py         OUT/index.json and index.html, kept across runs (rebuilt if damaged)
methods.py         the gallery's methods by name, each a Context -> PNGs with captions
make_gallery.py    make_gallery: load a run, run the methods, add their pictures to the index
__main__.py        python -m cnn_jax.visualize --workdir=DIR --method=NAME --out=OUT
"""

from cnn_jax.visualize.activation_max import activation_maximization, total_variation
from cnn_jax.visualize.attribution import (
    completeness_gap,
    deconvnet,
    gradcam,
    guided_backprop,
    heatmap,
    integrated_gradients,
    smoothgrad,
    vanilla_gradient,
)
from cnn_jax.visualize.features import (
    conv_kernels,
    feature_maps,
    filter_images,
    kernels_per_input_channel,
    receptive_field_rows_cols,
    top_patches,
)
from cnn_jax.visualize.occlusion import occlusion
from cnn_jax.visualize.probe import UnknownLayerError, apply_with_layer, layer_names

__all__ = [
    "UnknownLayerError",
    "activation_maximization",
    "apply_with_layer",
    "completeness_gap",
    "conv_kernels",
    "deconvnet",
    "feature_maps",
    "filter_images",
    "gradcam",
    "guided_backprop",
    "heatmap",
    "integrated_gradients",
    "kernels_per_input_channel",
    "layer_names",
    "occlusion",
    "receptive_field_rows_cols",
    "smoothgrad",
    "top_patches",
    "total_variation",
    "vanilla_gradient",
]
