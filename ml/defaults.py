"""The training defaults, in one torch-free place (train_model's --help needs them without torch).

On the 2-core development machine they train a model with a held-out exact-match
accuracy near 90% on synthetic data in about two minutes (see docs/operating.md).
"""

IMAGE_SIZE = 96  # pixels square; 128 trains ~1.5x slower for little gain on synthetic data
PER_CLASS = 150  # synthetic pictures per (garment, condition): 2,250 in all
EPOCHS = 8
BATCH_SIZE = 32
LEARNING_RATE = 3e-3  # the peak of the one-cycle schedule
EVAL_FRACTION = 0.2  # held out, stratified by (garment, condition)
