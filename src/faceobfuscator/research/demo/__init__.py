"""research/demo"""
