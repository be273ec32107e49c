"""The parity suite: the only package that knows both Keras and the scratch engine.

It needs the ``keras`` extra (``pip install '.[keras]'``); the engine (``scratch``) does not.
"""

from scratch import __version__  # one version for the one distribution both packages ship in

from .gradcheck import gradcheck
from .layer_check import check_layer

__all__ = ["__version__", "check_layer", "gradcheck"]
