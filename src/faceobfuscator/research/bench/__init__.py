"""research/bench"""
