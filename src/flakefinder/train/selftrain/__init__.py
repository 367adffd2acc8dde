"""Self-training: a class-agnostic segmenter learned from real, unlabelled micrographs.

The terrace detector labels real pictures (only its confident terraces count), realistic
synthetic images add exact labels, and the mix is cut into tiles at one pixel size
(:mod:`.dataset`); :mod:`.run` builds that dataset once per model folder, trains in resumable
chunks and keeps the account of what the model was trained on and how much CPU time it took
(:mod:`.ledger`).
"""
