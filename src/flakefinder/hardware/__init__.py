"""Microscope devices: Protocols, a simulated microscope and a pymmcore-plus backend."""
