"""The parity suite: the only package that knows both Keras and the scratch engine.

It needs the ``keras`` extra (``pip install '.[keras]'``); the engine (``scratch``) does not.
"""

from scratch import __version__  # one version for the one distribution both packages ship in

from .gradcheck import gradcheck

__all__ = ["__version__", "gradcheck"]
