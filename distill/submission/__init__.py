"""Submission: run a frozen graph over an unlabeled folder into a resumable ``fname,label`` CSV, and score it.

Takes ``model.pb`` and a folder of wavs; gives the Kaggle submission CSV.

``predictor`` loads the frozen graph and predicts batches (``GraphPredictor``; ``pfor`` holds its
vectorized_map converters), ``writer`` writes the resumable CSV (``write_submission``), ``scoring``
reads, validates and scores CSVs, ``label_wav`` labels single wav files like the TensorFlow tutorial.
"""
