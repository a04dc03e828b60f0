"""Pipelines that chain the stages through their library functions (``distill demo``).

Takes a configuration; gives a folder holding every stage's artefacts and a summary.
"""
