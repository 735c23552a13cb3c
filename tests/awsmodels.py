"""Requests checked against AWS's own service models (botocore's, offline): what the launcher
sends or prints would be accepted by the service's API as far as its shapes go."""

from __future__ import annotations

import functools

import botocore.session
from botocore.model import ServiceModel
from botocore.validate import ParamValidator


@functools.cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of ``service`` (``"emr"``, ``"iam"``, ``"s3"``...)."""
    return botocore.session.get_session().get_service_model(service)


def takes_parameter(service: str, operation: str, name: str) -> bool:
    """Whether ``operation`` of ``service`` has a top-level request parameter ``name``."""
    return name in service_model(service).operation_model(operation).input_shape.members


def request_errors(service: str, operation: str, params: dict) -> str:
    """botocore's report of what is wrong with ``params`` for ``operation``; "" when valid."""
    shape = service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    return report.generate_report() if report.has_errors() else ""


def assert_valid_request(service: str, operation: str, params: dict) -> None:
    """Fail with botocore's report unless ``params`` is a valid ``operation`` request."""
    errors = request_errors(service, operation, params)
    assert errors == "", f"{service} {operation}: {errors}"
