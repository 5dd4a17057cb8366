"""Moderation's own permissions for the admin's block action: block_user (on behalf of
a user) and suspend_user (site-wide, the stronger). Django creates the rows after
migrate; no table changes."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0003_block_moved_to_accounts"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="suspension",
            options={
                "permissions": [
                    ("block_user", "Can block users on behalf of a user"),
                    ("suspend_user", "Can suspend users site-wide"),
                ]
            },
        ),
    ]
