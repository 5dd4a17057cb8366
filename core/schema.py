"""OpenAPI schema plumbing."""

from typing import Any

from drf_standardized_errors.openapi import AutoSchema as StandardizedErrorsAutoSchema

from core.errors import PROBLEM_CONTENT_TYPE


class AutoSchema(StandardizedErrorsAutoSchema):
    """drf-standardized-errors' schema (every error response documented) with an
    operationId a view may pin, so that generated clients keep their method names."""

    def get_operation_id(self) -> str:
        pinned = getattr(self.view, "schema_operation_id", None)
        if pinned and self.method.lower() == "get":
            return pinned
        return super().get_operation_id()

    def get_tags(self) -> list[str]:
        pinned = getattr(self.view, "schema_tags", None)
        return list(pinned) if pinned else super().get_tags()

    def _should_add_error_response(self, responses: dict, status_code: str) -> bool:
        if status_code == "413":
            # A body over its limit: only operations that take one.
            return self.method in {"POST", "PUT", "PATCH"} and super()._should_add_error_response(responses, status_code)
        return super()._should_add_error_response(responses, status_code)


def problem_json_media_type(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Error responses are served as application/problem+json; say so in the schema."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for code, response in operation.get("responses", {}).items():
                content = response.get("content")
                if str(code)[:1] in {"4", "5"} and content and "application/json" in content:
                    content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
    return result
