"""flakefinder.server"""
