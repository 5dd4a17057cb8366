"""Records the application writes itself have no add page in the admin: an AI job (the
API charges and queues it), a credit account (it comes with its user) and a video
deletion (the audited delete writes it). Their add pages had every field read-only, so
a POST to one was a 500 even for a superuser."""

import pytest
from django.test import Client

from tests.helpers import make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", [
    "/admin/aijobs/aijob/add/", "/admin/aijobs/creditaccount/add/", "/admin/moderation/videodeletion/add/",
])
def test_a_superuser_cannot_add_what_the_application_writes_itself(path):
    root = make_user("root-admin")
    root.is_staff = root.is_superuser = True
    root.save()
    client = Client()
    client.force_login(root)
    assert client.get(path).status_code == 403
    assert client.post(path, {"reason": "by hand"}).status_code == 403
    changelist = client.get(path.removesuffix("add/"))
    assert changelist.status_code == 200
    assert path.encode() not in changelist.content, "no 'Add' link on the list"
