"""flakefinder.evaluate"""
