"""flakefinder.db"""
