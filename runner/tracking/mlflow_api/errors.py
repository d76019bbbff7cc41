"""MLflow-style errors: an `error_code` and a message, with the HTTP status MLflow uses."""

from __future__ import annotations

STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "UNAUTHENTICATED": 401,
    "INTERNAL_ERROR": 500,
}


class ApiError(Exception):
    """An error answered to the client as MLflow's server would answer it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_PARAMETER_VALUE", message)


def missing(message: str) -> ApiError:
    return ApiError("RESOURCE_DOES_NOT_EXIST", message)
