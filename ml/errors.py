"""The errors of the ml app, each with a message meant for a person to read.

No torch here: the consumer imports these before it knows whether it needs the model.
"""


class MlError(Exception):
    """Base class of the ml app's errors."""


class NoActiveModel(MlError):
    """No model version is active, so no photo can be read (train one: `manage.py train_model`)."""


class ModelUnavailable(MlError):
    """The active model version's artifact cannot be read or does not fit its network."""


class UndecodablePhoto(MlError, ValueError):
    """The bytes are not an image Pillow can decode (not an image, truncated or corrupt)."""


class DatasetError(MlError, ValueError):
    """Training data that cannot be used as it is: a missing folder, an unknown label, no images."""
