"""server/security"""
