"""Settings read from the environment, and the one way to run work beside the caller (streams).

Imports nothing else of the package.
"""
