"""Errors that carry TensorZero's status codes and messages, so every layer can raise and the
HTTP edge only has to serialize."""

from __future__ import annotations


class TensorZeroError(Exception):
    """Base class: `status_code` and `message` become the HTTP response."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def __reduce__(self):
        # Ray pickles exceptions across actors; keep the status code on the way.
        return (_rebuild_error, (type(self), self.message, self.status_code, self.__dict__))

    def body(self) -> dict:
        return {"error": self.message}

    # TensorZeroError's structured form (`gateway.unstable_error_json`): {kind: fields}.
    kind = "InternalError"

    def details(self) -> dict:
        return {self.kind: self.detail_fields()}

    def detail_fields(self) -> dict:
        return {"message": self.message}

    @property
    def retryable(self) -> bool:
        return True


def _rebuild_error(cls, message, status_code, state):
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    error.message = message
    error.status_code = status_code
    return error


class InvalidRequest(TensorZeroError):
    status_code = 400
    kind = "InvalidRequest"


class InputValidationError(InvalidRequest):
    kind = "InputValidation"

    def __init__(self, messages: list[str]):
        super().__init__(f"Input validation failed with messages: {messages}")
        self.messages = messages

    def detail_fields(self) -> dict:
        return {"source": {"messages": self.messages}}


class NotFound(TensorZeroError):
    status_code = 404
    kind = "NotFound"


class UnknownName(NotFound):
    what = ""

    def __init__(self, name: str):
        super().__init__(f"Unknown {self.what}: {name}")
        self.name = name

    def detail_fields(self) -> dict:
        return {"name": self.name}


class UnknownFunction(UnknownName):
    kind, what = "UnknownFunction", "function"


class UnknownVariant(UnknownName):
    kind, what = "UnknownVariant", "variant"


class UnknownModel(UnknownName):
    kind, what = "UnknownModel", "model"


class RouteNotFound(NotFound):
    kind = "RouteNotFound"

    def __init__(self, method: str, path: str):
        super().__init__(f"Route not found: {method} {path}")
        self.method, self.path = method, path

    def detail_fields(self) -> dict:
        return {"path": self.path, "method": self.method}


class Forbidden(TensorZeroError):
    status_code = 403
    kind = "Forbidden"


class PayloadTooLarge(TensorZeroError):
    status_code = 413
    kind = "PayloadTooLarge"


class NotImplementedYet(TensorZeroError):
    status_code = 501
    kind = "NotImplemented"


class ApiKeyMissing(InvalidRequest):
    kind = "ApiKeyMissing"

    def __init__(self, provider: str, detail: str):
        super().__init__(f"API key missing for provider {provider}: {detail}")
        self.provider, self.detail = provider, detail

    def detail_fields(self) -> dict:
        return {"provider_name": self.provider, "message": self.detail}

    @property
    def retryable(self) -> bool:
        return False


class ProviderError(TensorZeroError):
    """One provider attempt failed; `raw_request`/`raw_response` are kept for the caller."""

    status_code = 502
    kind = "InferenceClient"

    def __init__(
        self,
        message: str,
        *,
        provider_type: str,
        status_code: int | None = None,
        raw_request: str | None = None,
        raw_response: str | None = None,
        rate_limited: bool = False,
    ):
        super().__init__(message, status_code)
        self.provider_type = provider_type
        self.raw_request = raw_request
        self.raw_response = raw_response
        self.rate_limited = rate_limited

    def detail_fields(self) -> dict:
        return {
            "message": self.message,
            "status_code": self.status_code,
            "provider_type": self.provider_type,
            "raw_request": self.raw_request,
            "raw_response": self.raw_response,
        }

    @property
    def retryable(self) -> bool:
        return not self.rate_limited


class UnservableInput(InvalidRequest):
    """A self-hosted model cannot take this input (too long for its context, a file it cannot
    read): the caller's to fix, so no retry, and wrappers whose last error is one answer 400."""

    @property
    def retryable(self) -> bool:
        return False


class PromptTooLong(UnservableInput):
    pass


def _wrapper_status(last: TensorZeroError | None, default: int) -> int:
    while last is not None and not isinstance(last, UnservableInput):
        nested = getattr(last, "errors", None)
        last = list(nested.values())[-1] if nested else None
    return 400 if last is not None else default


class Timeout(TensorZeroError):
    status_code = 408
    kind = "InferenceTimeout"


class AllModelProvidersFailed(TensorZeroError):
    def __init__(self, errors: dict[str, TensorZeroError], model_name: str | None = None):
        joined = ", ".join(f"{name}: {err.message}" for name, err in errors.items())
        last = list(errors.values())[-1] if errors else None
        status = 429 if isinstance(last, ProviderError) and last.rate_limited else _wrapper_status(last, 500)
        super().__init__(f"All model providers failed to infer with errors: {joined}", status)
        self.errors = errors
        self.model_name = model_name

    kind = "AllModelProvidersFailed"

    def detail_fields(self) -> dict:
        return {"provider_errors": {name: err.details() for name, err in self.errors.items()}}

    @property
    def retryable(self) -> bool:
        return any(err.retryable for err in self.errors.values())


class AllVariantsFailed(TensorZeroError):
    def __init__(self, errors: dict[str, TensorZeroError]):
        joined = "\n".join(f"{name}: {err.message}" for name, err in errors.items())
        last = list(errors.values())[-1] if errors else None
        status = 429 if last is not None and last.status_code == 429 else _wrapper_status(last, 502)
        super().__init__(f"All variants failed with errors: {joined}", status)
        self.errors = errors

    kind = "AllVariantsFailed"

    def detail_fields(self) -> dict:
        return {"errors": {name: err.details() for name, err in self.errors.items()}}


class StreamError(TensorZeroError):
    """An error inside a stream after its first chunk: it ends the stream."""


def unwrap(exc: BaseException) -> BaseException:
    """Ray wraps exceptions raised in other actors; return the original one."""
    cause = getattr(exc, "cause", None)
    while cause is not None and isinstance(cause, BaseException) and cause is not exc:
        exc = cause
        cause = getattr(exc, "cause", None)
    return exc


class AllCandidatesFailed(TensorZeroError):
    """Every candidate of a best-of-n or mixture-of-n variant failed."""

    def __init__(self, errors: list[TensorZeroError]):
        joined = "\n".join(err.message for err in errors)
        super().__init__(f"All candidates failed with errors: {joined}", 502)


class BatchInputValidation(InvalidRequest):
    """One element of a batch is invalid; the message names its index."""

    kind = "BatchInputValidation"


class UnsupportedVariantForBatchInference(InvalidRequest):
    """Batch inference runs one `chat_completion` variant."""

    kind = "UnsupportedVariantForBatchInference"


class UnsupportedModelProviderForBatchInference(InvalidRequest):
    """The variant's first provider has no batch API here."""

    kind = "UnsupportedModelProviderForBatchInference"


class BatchNotFound(NotFound):
    kind = "BatchNotFound"

    def __init__(self, batch_id: str, inference_id: str | None = None):
        what = f"Batch {batch_id}" if inference_id is None else f"Inference {inference_id} in batch {batch_id}"
        super().__init__(f"{what} not found")
