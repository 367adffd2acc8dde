"""flakefinder.train"""
