"""flakefinder.detect"""
