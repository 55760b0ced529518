"""popdl: which demographic history produced the data, by deep learning on simulations."""

__version__ = "0.1.0"
