"""Terrace segmentation: flakes found from the image itself, then classified per terrace.

A terrace is one connected region of one thickness. The pipeline needs no setup profile:

1. :mod:`.image` shrinks the micrograph to a working size, finds the substrate colour (joint
   histogram mode) and marks channels that clip on the substrate (they carry no contrast);
2. :mod:`.background` fits a smooth substrate field (normalised convolution over the largest
   edge-free areas near the substrate colour, so vignetting and crowded fields are followed) and
   forms the log contrast ``log(I / I_substrate)`` and the foreground;
3. :mod:`.regions` cuts the foreground into terraces: colour modes of the log contrast split at
   edges into pieces, pieces merged when their colours agree within their own scatter, slivers
   dissolved, boundaries settled at half contrast;
4. :mod:`.features` measures each terrace (robust interior contrast, shape, texture, clipping) and
   gives the reason a region is not a flake (bulk, residue, halo, sliver, too small);
5. :mod:`.classify` names material and layer number per terrace from a setup profile or from a
   self-calibration on the batch (:mod:`.selfcal`), with a confidence and a ranked alternative.

:class:`~.detector.TerraceDetector` puts them together as a ``Detector``.
"""

from flakefinder.detect.terrace.segment import (
    SegmentSettings,
    Terrace,
    TerraceMap,
    segment_terraces,
)

__all__ = ["SegmentSettings", "Terrace", "TerraceMap", "segment_terraces"]
