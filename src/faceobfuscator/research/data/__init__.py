"""research/data"""
