"""flakefinder.synth"""
