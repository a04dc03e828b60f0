"""What architectures are built from: the feature front-end shared by training and export, and Keras blocks.

Takes waveforms; gives the layers that ``teachers/`` and ``students/`` assemble into models.
"""
