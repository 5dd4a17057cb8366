"""The pages' forms: Django's fields check what the API's serializers check (a
CharField refuses a NUL, which PostgreSQL would refuse with a 500), so a page takes
nothing the API would not."""

from typing import cast

from django import forms

from contents.models import Channel

# Channel.name is a CharField: its max_length is set.
CHANNEL_NAME_MAX = cast(int, Channel._meta.get_field("name").max_length)


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=CHANNEL_NAME_MAX)
