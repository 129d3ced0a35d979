"""medbench.config"""
