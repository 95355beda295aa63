"""rmt's core layer: what every other package may import and that imports none of them.

Errors, the measure tables, the run-directory format and its records, model-config reading, Triton flag parsing,
server addresses, formatting, histograms and the package's data (scenarios, zoo).
"""
