"""`python -m config.daphne_server ARGS`: daphne's own command line (the same
arguments), whose access log never shows a ticket.

EventSource and WebSocket URLs carry single-use tickets (`?ticket=`, realtime.tickets);
daphne logs each request's whole URI. Here the value of every `ticket` parameter is
replaced before the line is written. `make run`'s dev mode and the tests' servers run
daphne this way; granian (the production mode) logs no query string in its default
access-log format, and run_stack.sh turns its access log off."""

import re
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server

# A `ticket` parameter however it is spelled in the URI (%74icket decodes to ticket).
_TICKET_PARAMETER = re.compile(r"(?i)([?&;](?:t|%74)(?:i|%69)(?:c|%63)(?:k|%6b)(?:e|%65)(?:t|%74)=)[^&;#\s]*")


def redact_tickets(uri: str) -> str:
    """`uri` with the value of every `ticket` query parameter replaced."""
    if "?" not in uri:
        return uri
    return _TICKET_PARAMETER.sub(r"\1[redacted]", uri)


class RedactingServer(Server):
    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        if isinstance(details.get("path"), str):
            details = {**details, "path": redact_tickets(details["path"])}
        super().log_action(protocol, action, details)


class RedactingCommandLineInterface(CommandLineInterface):
    server_class = RedactingServer


if __name__ == "__main__":
    RedactingCommandLineInterface.entrypoint()
