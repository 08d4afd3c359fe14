"""Errors that mean "the user must fix their input".

Every CLI catches `UserError`, prints its message as one line on stderr and exits with 2
(INTERFACES.md); any other exception is a bug or a failure of the environment and exits with 1.
"""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
