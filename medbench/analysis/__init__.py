"""medbench.analysis"""
