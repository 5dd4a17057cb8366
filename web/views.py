"""The pages: thin views that render a template; the data comes from the API through
the client kit (static/web/kit/), so the pages use exactly what a frontend team would."""

import uuid
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from contents import selectors, services
from web.forms import CHANNEL_NAME_MAX, ChannelForm
from web.strings import page_strings

TRANSPORTS = ("sse", "websocket")


def _page(request: HttpRequest, template: str, config: dict[str, Any], **context: Any) -> HttpResponse:
    """Every page: its config and the translated strings for the kit's scripts (as
    json_script, never inline code), the bell's user."""
    config = {"userId": str(request.user.id), "username": request.user.get_username(), **config}
    return render(request, template, {"page_config": config, "strings": page_strings(), **context})


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("web-channels")


@require_GET
@login_required
@ensure_csrf_cookie
def channels(request: HttpRequest) -> HttpResponse:
    return _page(request, "web/channels.html", {}, nav="channels", channels=selectors.channel_list(user=request.user))


@require_POST
@login_required
def channel_new(request: HttpRequest) -> HttpResponse:
    form = ChannelForm(request.POST)
    if not form.is_valid():
        error = (
            form.errors["name"][0]  # Django's own words for a NUL
            if form.has_error("name", code="null_characters_not_allowed")
            else _("A channel needs a name of at most %(max)s characters.") % {"max": CHANNEL_NAME_MAX}
        )
        # What was typed goes back into the field, but for what no page can hold.
        name = request.POST.get("name", "").strip().replace("\x00", "")
        response = _page(
            request, "web/channels.html", {}, nav="channels", channels=selectors.channel_list(user=request.user),
            error=error, name=name,
        )
        response.status_code = 400
        return response
    channel = services.channel_create(owner=request.user, name=form.cleaned_data["name"])
    return redirect("web-channel", channel_id=channel.id)


@require_GET
@login_required
@ensure_csrf_cookie
def channel(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponse:
    found = selectors.channel_get(user=request.user, channel_id=channel_id)
    transport = request.GET.get("transport", "sse")
    config = {
        "channelId": str(found.id),
        "transport": transport if transport in TRANSPORTS else "sse",
    }
    return _page(request, "web/channel.html", config, nav="channels", channel=found)


@require_GET
@login_required
@ensure_csrf_cookie
def studio(request: HttpRequest) -> HttpResponse:
    return _page(request, "web/studio.html", {}, nav="studio")
