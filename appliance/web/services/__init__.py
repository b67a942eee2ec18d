"""Domain operations shared by the UI and the API, so both obey the same rules."""


class ServiceError(Exception):
    """A rule of the domain refused the operation; ``status`` is the HTTP answer."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class Conflict(ServiceError):
    status = 409
