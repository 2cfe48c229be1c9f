"""Error types shared across crlbench.

`UserError` is anything a user can cause (a bad key, a missing file, an impossible value). The
command line prints its message as one line and exits with code 2; everything else is a bug or
a failed run and is reported as such.
"""


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2."""


class StoreWriteError(RuntimeError):
    """The results store cannot be written (a full disk, a read-only or unwritable folder):
    the suite stops with one line (exit code 1). Finished runs keep their records; the run
    being written gets none, so the same command, once the store can be written, resumes it
    from its last checkpoint. Raised with `store_writes`."""

    def __init__(self, path, error: OSError):
        super().__init__(path, error)  # as args: a Ray trial's error is copied and pickled
        self.path, self.error = path, error

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.error.strerror or self.error}"


class MethodCheckError(AssertionError):
    """A method plugin breaks the protocol (raised by `crlbench.testing.check_method`)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; carries the step and the loss terms."""

    def __init__(self, step: int, terms: dict[str, float]):
        self.step = step
        self.terms = terms
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at step {step}: {shown}")
