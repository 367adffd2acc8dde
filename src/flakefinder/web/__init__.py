"""flakefinder.web"""
