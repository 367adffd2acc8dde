"""The hunt as a lab runs it: overview, search, revisit each candidate at high magnification.

This package ties the passes to storage: :mod:`.overview_pass` (low-magnification mosaic, chip
outline, residue, empty areas, proposed search region), :mod:`.search_pass` (the search of the
region at the search objective), :mod:`.revisit_pass` (back to selected flakes at high
magnification), :mod:`.simulated` (the simulated microscope a scan was made with, rebuilt for
later passes) and :mod:`.detectors` (one detector per objective: calibration is per
magnification). The image work lives in :mod:`flakefinder.scan`, the tables in
:mod:`flakefinder.db.hunt`.
"""
