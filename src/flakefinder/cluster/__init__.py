"""Scale-out: batch inference over many images on a Dask cluster (a local one by default)."""
