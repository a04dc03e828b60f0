"""Submission: run a frozen graph over an unlabeled folder into a resumable ``fname,label`` CSV, and score it.

Takes ``model.pb`` and a folder of wavs; gives the Kaggle submission CSV.
"""
