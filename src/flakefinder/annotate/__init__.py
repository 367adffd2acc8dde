"""flakefinder.annotate"""
