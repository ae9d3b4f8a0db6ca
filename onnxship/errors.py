"""Named errors. Each message says what was expected and what came."""


class PipelineError(Exception):
    """Base class: a stage stops with this and a message a user can act on."""


class ConfigError(PipelineError):
    """The configuration is missing a value or names something that does not exist."""


class DataError(PipelineError):
    """The input table cannot be used (missing target, non-numeric feature, too few rows, ...)."""


class ModelLoadError(PipelineError):
    """A native model file is missing, corrupt or of another family than declared."""


class UnknownEntryError(ConfigError):
    """A registry lookup (family, pass) failed; the message lists what is registered."""
