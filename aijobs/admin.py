from django.contrib import admin
from django.forms import Form
from django.http import HttpRequest

from aijobs import credits
from aijobs.models import AIJob, CreditAccount, CreditEntry


@admin.register(AIJob)
class AIJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "owner", "status", "progress", "cost", "refunded", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("id", "owner__username")
    list_select_related = ("owner",)
    readonly_fields = [f.name for f in AIJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Jobs are made through the API, which charges and queues them; every field here is read-only, so the add page could only fail (500).
        return False


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "balance", "updated_at")
    search_fields = ("user__username",)
    list_select_related = ("user",)
    readonly_fields = ("user", "balance", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # An account comes with its user; a balance moves only by entries (CreditEntryAdmin). The add page could only fail (500).
        return False


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    """Staff add (or take back) credits by adding an entry; the balance follows."""

    list_display = ("user", "amount", "reason", "job", "created_by", "created_at")
    search_fields = ("user__username", "reason")
    list_select_related = ("user", "job", "created_by")
    autocomplete_fields = ("user",)
    fields = ("user", "amount", "reason")

    def has_change_permission(self, request: HttpRequest, obj: CreditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CreditEntry | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: CreditEntry, form: Form, change: bool) -> None:
        credits.add(user=obj.user, amount=obj.amount, reason=obj.reason or "Added by staff", created_by=request.user)
