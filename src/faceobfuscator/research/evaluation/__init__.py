"""research/evaluation"""
