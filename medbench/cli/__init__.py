"""medbench.cli"""
