"""Chip raster scans: plans, autofocus, focus maps and the capture -> detect -> store loop."""
