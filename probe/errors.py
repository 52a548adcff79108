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


class ParameterError(ProbeError):
    """A bad value of a named parameter, named in the library's own terms (``budget``,
    ``size``); a front end that calls the parameter something else (the command line's
    ``--budget``, a sweep file's ``'budget'``) renders the same error in its terms with
    :meth:`render`.

    ``template`` holds ``{name}`` where the parameter is named (other braces doubled), e.g.
    ``ParameterError("{name} must be >= 1, got 0", name="budget")``.
    """

    def __init__(self, template: str, *, name: str) -> None:
        self.template, self.name = template, name
        super().__init__(template.format(name=name))

    def render(self, terms) -> str:
        """The message with the parameter named ``terms(name)`` (a callable) or ``terms[name]``
        (a mapping; a name it lacks stays as it is)."""
        term = terms(self.name) if callable(terms) else terms.get(self.name, self.name)
        return self.template.format(name=term)


def braces(text: object) -> str:
    """``str(text)`` with its braces doubled, for a :class:`ParameterError` template."""
    return str(text).replace("{", "{{").replace("}", "}}")
