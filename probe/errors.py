"""The one exception type for bad input, and the budget refusal.

The CLI prints a :class:`ProbeError`'s message on one line and exits with code 2.
Deriving from ValueError (as scikit-learn's parameter errors do) lets library users
catch it as the ValueError it is.
"""


class ProbeError(ValueError):
    """Bad input or an unusable model: a message for the user, never a traceback."""


class BudgetExceeded(ProbeError):
    """A query beyond the budget was refused (before any inference ran)."""


class EndpointBudgetSpent(BudgetExceeded):
    """A remote endpoint refused a request because its key's query budget is spent (HTTP 429
    ``budget_exhausted``, or the budget the server last reported). The engine ends the jobs
    of that round as if their own budget were spent; the other jobs go on."""
