"""flakefinder.optics"""
