"""medbench.run"""
