"""Data: wav decoding, the Speech Commands index and splits, the decoded cache, example sets,
unlabeled folders, augmentation, and the datasets themselves (``fetch`` downloads v0.01 or v0.02, ``synth`` speaks a demo one).

Takes a Speech Commands-layout folder; gives decoded waveforms, labelled example sets and augmented views.
"""
