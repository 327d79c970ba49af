"""scalespace: diffusion models as scale-spaces of probability distributions.

`shared` is the library: processes, samplers, denoisers, kernels, statistics,
data, jobs and storage. It knows nothing of Celery or HTTP.
"""

__version__ = "0.3.0"


class ScalespaceError(ValueError):
    """An error a user can cause and fix; its message is one line saying how."""
