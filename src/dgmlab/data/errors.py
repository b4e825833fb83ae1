class DataConfigError(ValueError):
    """A data set setting is wrong; the message names the setting and the fix."""
