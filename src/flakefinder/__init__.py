"""flakefinder: find exfoliated 2D crystals on SiO2/Si chips with optics and deep learning."""

__version__ = "0.1.0"
