"""The scratch layers, as ``keras.layers`` names them: ``from scratch import layers; layers.Conv2D(...)``.

``LAYER_MODULES`` is the engine's one table of supported layer classes: the loader builds layers
from a file through it (saving/registry.py), and this namespace is made from it, so nothing can be
loadable without being importable here, or the other way round.
"""

import importlib

# Keras class name -> scratch module that defines a class of the same name.
LAYER_MODULES = {
    **dict.fromkeys(["Dense", "Activation", "ReLU", "Softmax", "Flatten", "Reshape", "Dropout"], "core"),
    **dict.fromkeys(["Conv2D", "LocallyConnected2D", "ZeroPadding2D"], "conv"),
    "Conv1D": "conv1d",
    **dict.fromkeys(["Conv1DTranspose", "Conv2DTranspose"], "conv_transpose"),
    **dict.fromkeys(["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"], "depthwise"),
    **dict.fromkeys(["MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"], "pooling"),
    **dict.fromkeys(["GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D"],
                    "global_pooling"),
    **dict.fromkeys(["ZeroPadding1D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "Permute",
                     "Identity"], "reshaping"),
    **dict.fromkeys(["SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                     "ActivityRegularization"], "regularization"),
    "BatchNormalization": "normalization",
    **dict.fromkeys(["LayerNormalization", "GroupNormalization", "UnitNormalization"], "layer_normalization"),
    **dict.fromkeys(["Rescaling", "Normalization"], "preprocessing"),
    **dict.fromkeys(["LeakyReLU", "PReLU", "ELU"], "activation_layers"),
    **dict.fromkeys(["LayerScale", "CustomScaleLayer"], "application_layers"),
    **dict.fromkeys(["Add", "Concatenate", "Subtract", "Multiply", "Average", "Maximum", "Minimum"], "merge"),
    "Dot": "dot",
    "Embedding": "embedding",
    **dict.fromkeys(["SimpleRNN", "LSTM", "GRU"], "recurrent"),
    **dict.fromkeys(["Bidirectional", "TimeDistributed"], "wrappers"),
    **dict.fromkeys(["Masking", "RepeatVector"], "sequence"),
    **dict.fromkeys(["Attention", "AdditiveAttention"], "attention"),
    "EinsumDense": "einsum_dense",
    "MultiHeadAttention": "multi_head_attention",
}


def layer_class(class_name):
    """The scratch class for a Keras layer class name (looked up in the fixed table only)."""
    module = importlib.import_module(f"{__name__}.{LAYER_MODULES[class_name]}")
    return getattr(module, class_name)


globals().update({name: layer_class(name) for name in LAYER_MODULES})
__all__ = sorted(LAYER_MODULES)
