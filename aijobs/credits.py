"""Credit balances: a grant on first use, spending that never overdraws (a
conditional UPDATE), refunds, and staff grants, each with a ledger entry."""

from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from aijobs.models import CreditAccount, CreditEntry


def ensure_account(user: Any) -> None:
    """Open the account with the new-account grant, once (safe under concurrency)."""
    table = CreditAccount._meta.db_table
    with transaction.atomic():
        with connection.cursor() as cursor:
            # The table name is the model's; the values are parameters.
            cursor.execute(
                f'INSERT INTO "{table}" (user_id, balance, updated_at) VALUES (%s, %s, now()) '  # noqa: S608
                "ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
                [user.pk, settings.CREDITS_NEW_ACCOUNT_GRANT],
            )
            created = cursor.fetchone() is not None
        if created:
            CreditEntry.objects.create(user=user, amount=settings.CREDITS_NEW_ACCOUNT_GRANT, reason="New account grant")


def balance(user: Any) -> int:
    ensure_account(user)
    return CreditAccount.objects.filter(user=user).values_list("balance", flat=True).get()


def spend(*, user: Any, amount: int, reason: str, job: Any = None) -> bool:
    """Take `amount` if the balance covers it; False (and nothing taken) otherwise."""
    ensure_account(user)
    with transaction.atomic():
        taken = CreditAccount.objects.filter(user=user, balance__gte=amount).update(balance=F("balance") - amount)
        if taken:
            CreditEntry.objects.create(user=user, amount=-amount, reason=reason, job=job)
    return bool(taken)


def add(*, user: Any, amount: int, reason: str, job: Any = None, created_by: Any = None) -> None:
    ensure_account(user)
    with transaction.atomic():
        CreditAccount.objects.filter(user=user).update(balance=F("balance") + amount)
        CreditEntry.objects.create(user=user, amount=amount, reason=reason, job=job, created_by=created_by)
