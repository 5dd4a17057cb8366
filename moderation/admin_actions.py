"""Admin actions that ask for something first (an intermediate page), then call the
moderation services: batch delete of videos with a reason, block of users on
behalf of a user or site-wide (suspension)."""

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from moderation import services


class DeleteReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class BlockForm(forms.Form):
    SITE_WIDE = "site"
    ON_BEHALF = "user"
    SCOPES = {ON_BEHALF: "On behalf of a user (they stop seeing these users)", SITE_WIDE: "Site-wide: suspend these users"}
    scope = forms.ChoiceField(widget=forms.RadioSelect)
    on_behalf_of = forms.CharField(required=False, help_text="Username of the user who blocks them.")
    reason = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: Any, scopes: list[str], **kwargs: Any) -> None:
        """Only the scopes the acting user may use are offered, and only those validate:
        a site-wide scope posted by someone who may only block on behalf is refused."""
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["scope"]).choices = [(scope, self.SCOPES[scope]) for scope in scopes]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("scope") == self.ON_BEHALF:
            username = cleaned.get("on_behalf_of", "").strip()
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                self.add_error("on_behalf_of", "No user with that username.")
            cleaned["blocker"] = user
        return cleaned


def _intermediate(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any], form: forms.Form, title: str, action: str
) -> TemplateResponse:
    return TemplateResponse(request, "admin/moderation/confirm_action.html", {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": queryset[:100],
        "count": queryset.count(),
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "opts": modeladmin.model._meta,
    })


# Each action names the has_<permission>_permission methods of its admin (moderation.admin)
# that must allow it: Django offers it only then, and refuses it when posted anyway.
@admin.action(description="Delete selected videos (with reason)", permissions=["delete"])
def delete_videos_with_reason(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> TemplateResponse | None:
    form = DeleteReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        deleted = services.videos_delete(video_ids=list(queryset.values_list("id", flat=True)), reason=form.cleaned_data["reason"], by=request.user)
        modeladmin.message_user(request, f"Deleted {len(deleted)} videos. Their files are removed after the grace period.", messages.SUCCESS)
        return None
    return _intermediate(modeladmin, request, queryset, form, "Why are these videos deleted?", "delete_videos_with_reason")


@admin.action(description="Block selected users", permissions=["block"])
def block_users(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> TemplateResponse | None:
    scopes = [BlockForm.ON_BEHALF] + ([BlockForm.SITE_WIDE] if modeladmin.has_suspend_permission(request) else [])
    form = BlockForm(request.POST if "apply" in request.POST else None, scopes=scopes)
    if form.is_valid():
        users = list(queryset)
        if form.cleaned_data["scope"] == BlockForm.SITE_WIDE:
            try:
                count = services.suspend_users(users=users, by=request.user, reason=form.cleaned_data.get("reason", ""))
            except PermissionDenied as refused:
                modeladmin.message_user(request, str(refused), messages.ERROR)
                return None
            modeladmin.message_user(request, f"Suspended {count} users: they cannot log in and their tokens are revoked.", messages.SUCCESS)
        else:
            blocker = form.cleaned_data["blocker"]
            blocked = services.block_users(blocker=blocker, user_ids=[u.id for u in users])
            modeladmin.message_user(request, f"{blocker.username} now blocks {len(blocked)} users.", messages.SUCCESS)
        return None
    return _intermediate(modeladmin, request, queryset, form, "Block these users", "block_users")
