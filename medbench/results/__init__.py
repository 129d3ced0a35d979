"""medbench.results"""
