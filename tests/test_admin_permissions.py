"""The moderation actions in the Django admin do only what the acting staff user was
granted, tried from outside through /admin/ as a logged-in browser would: an action
not granted is neither offered nor run when posted anyway; Django's plain delete,
which leaves no reason and no record, is gone from the videos' admin; suspension
asks for more than blocking on behalf of a user, and only a superuser suspends a
superuser. The intermediate page says its heading once. The API's batch delete asks
for the same permission as the admin's."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import Block
from moderation.models import Suspension, VideoDeletion
from moderation.services import suspend_users
from tests.helpers import api_client_for, make_user
from tests.media import make_video
from videos.models import Video
from videos.services import video_upload

pytestmark = pytest.mark.django_db

VIDEO = make_video(seconds=1)
VIDEOS, USERS = "/admin/videos/video/", "/admin/accounts/user/"


def staff_with(username: str, *perms: str):
    """A staff user (not superuser) holding exactly these "app_label.codename" permissions."""
    user = make_user(username, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(title: str) -> Video:
    return video_upload(owner=make_user(), file=SimpleUploadedFile("v.mp4", VIDEO), title=title)


def offered_actions(client: Client, path: str) -> set[str]:
    """The actions the changelist's action menu offers (none: no menu at all)."""
    page = client.get(path)
    assert page.status_code == 200
    return set(re.findall(r'<option value="([a-z_]+)"', page.content.decode())) - {""}


def run_action(client: Client, path: str, action: str, selected: list, **fields: str):
    return client.post(path, {"action": action, "_selected_action": [str(o.id) for o in selected], **fields})


def suspended(*users) -> set[str]:
    """Which of these users are suspended: inactive, or with a Suspension record."""
    names = {u.username for u in users}
    inactive = set(type(users[0]).objects.filter(username__in=names, is_active=False).values_list("username", flat=True))
    recorded = set(Suspension.objects.filter(user__username__in=names).values_list("user__username", flat=True))
    return inactive | recorded


def test_a_staff_user_who_may_only_view_is_offered_no_action_and_running_one_anyway_changes_nothing():
    viewer = logged_in(staff_with("viewer", "videos.view_video", "accounts.view_user"))
    videos = [upload("a"), upload("b")]
    boss, other = make_user("boss", is_staff=True, is_superuser=True), make_user("other")

    assert offered_actions(viewer, VIDEOS) == set()
    assert offered_actions(viewer, USERS) == set()

    for action in ("delete_videos_with_reason", "delete_selected"):
        run_action(viewer, VIDEOS, action, videos, apply="1", reason="gone", post="yes")
    assert Video.objects.visible().count() == Video.objects.count() == 2
    assert not VideoDeletion.objects.exists()

    run_action(viewer, USERS, "block_users", [boss, other], apply="1", scope="site", reason="x")
    run_action(viewer, USERS, "block_users", [boss, other], apply="1", scope="user", on_behalf_of="other")
    assert suspended(boss, other) == set()
    assert not Block.objects.exists()


def test_the_delete_permission_gets_only_the_audited_delete():
    deleter = logged_in(staff_with("deleter", "videos.view_video", "videos.change_video", "videos.delete_video"))
    videos = [upload("a"), upload("b")]

    assert offered_actions(deleter, VIDEOS) == {"delete_videos_with_reason"}
    # Django's plain bulk delete, posted anyway (its confirmation included): refused.
    run_action(deleter, VIDEOS, "delete_selected", videos, post="yes")
    # The object's own delete page neither deletes nor is linked from its change page.
    assert f"/admin/videos/video/{videos[0].id}/delete/" not in deleter.get(f"/admin/videos/video/{videos[0].id}/change/").content.decode()
    assert deleter.post(f"/admin/videos/video/{videos[0].id}/delete/", {"post": "yes"}).status_code == 302
    assert Video.objects.count() == Video.objects.visible().count() == 2

    done = run_action(deleter, VIDEOS, "delete_videos_with_reason", videos, apply="1", reason="Copyright")
    assert done.status_code == 302
    assert Video.objects.count() == 2 and Video.objects.visible().count() == 0, "hidden, not removed"
    assert set(VideoDeletion.objects.values_list("reason", "deleted_by__username")) == {("Copyright", "deleter")}


def test_the_apis_batch_delete_asks_staff_for_the_same_delete_permission():
    video = upload("a")
    ask = {"video_ids": [str(video.id)], "reason": "spam"}
    viewer = api_client_for(staff_with("viewer", "videos.view_video", "accounts.view_user"))
    refused = viewer.post("/v1/admin/videos/batch-delete", ask, format="json")
    assert refused.status_code == 403 and refused["Content-Type"] == "application/problem+json"
    assert Video.objects.visible().count() == 1 and not VideoDeletion.objects.exists()

    deleter = api_client_for(staff_with("deleter", "videos.delete_video"))
    assert deleter.post("/v1/admin/videos/batch-delete", ask, format="json").json()["deleted_count"] == 1
    assert set(VideoDeletion.objects.values_list("deleted_by__username", flat=True)) == {"deleter"}


def test_blocking_on_behalf_of_a_user_does_not_grant_suspension():
    blocker = logged_in(staff_with("blocker", "accounts.view_user", "moderation.block_user"))
    victim, spammer = make_user("victim"), make_user("spammer")

    assert offered_actions(blocker, USERS) == {"block_users"}
    asked = run_action(blocker, USERS, "block_users", [spammer]).content.decode()
    assert 'value="user"' in asked and 'value="site"' not in asked, "site-wide is not offered"

    refused = run_action(blocker, USERS, "block_users", [spammer], apply="1", scope="site", reason="spam")
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert suspended(spammer) == set()

    assert run_action(blocker, USERS, "block_users", [spammer], apply="1", scope="user", on_behalf_of="victim").status_code == 302
    assert list(Block.objects.filter(blocker=victim).values_list("blocked_id", flat=True)) == [spammer.id]


def test_a_suspender_suspends_users_but_not_a_superuser(django_capture_on_commit_callbacks):
    suspender = logged_in(staff_with("suspender", "accounts.view_user", "moderation.suspend_user"))
    boss, spammer, troll = make_user("boss", is_staff=True, is_superuser=True), make_user("spammer"), make_user("troll")

    assert offered_actions(suspender, USERS) == {"block_users"}
    assert 'value="site"' in run_action(suspender, USERS, "block_users", [spammer]).content.decode()

    # A batch with a superuser in it is refused whole, with a message.
    refused = run_action(suspender, USERS, "block_users", [boss, spammer], apply="1", scope="site", reason="x")
    assert refused.status_code == 302
    messages = suspender.get(USERS).content.decode()
    assert "Only a superuser may suspend a superuser; nobody was suspended." in messages
    assert suspended(boss, spammer) == set()

    with django_capture_on_commit_callbacks(execute=True):
        run_action(suspender, USERS, "block_users", [troll], apply="1", scope="site", reason="abuse")
    assert suspended(boss, spammer, troll) == {"troll"}


def test_the_service_refuses_a_superuser_suspended_by_anyone_below_superuser():
    boss, moderator = make_user("boss", is_staff=True, is_superuser=True), make_user("moderator", is_staff=True)
    with pytest.raises(PermissionDenied):
        suspend_users(users=[boss], by=moderator, reason="x")
    assert suspended(boss) == set()


def test_a_superuser_may_do_all_of_it(django_capture_on_commit_callbacks):
    root = logged_in(make_user("root", is_staff=True, is_superuser=True))
    other_root, spammer = make_user("other-root", is_staff=True, is_superuser=True), make_user("spammer")
    video = upload("a")

    assert offered_actions(root, VIDEOS) == {"delete_videos_with_reason"}
    assert offered_actions(root, USERS) == {"block_users", "delete_selected"}
    run_action(root, VIDEOS, "delete_videos_with_reason", [video], apply="1", reason="spam")
    assert not Video.objects.visible().exists()
    with django_capture_on_commit_callbacks(execute=True):
        run_action(root, USERS, "block_users", [other_root, spammer], apply="1", scope="site", reason="x")
    assert suspended(other_root, spammer) == {"other-root", "spammer"}


@pytest.mark.parametrize(("path", "action", "heading"), [
    (VIDEOS, "delete_videos_with_reason", "Why are these videos deleted?"),
    (USERS, "block_users", "Block these users"),
])
def test_the_intermediate_page_shows_its_heading_once(path, action, heading):
    root = logged_in(make_user("root", is_staff=True, is_superuser=True))
    selected = [upload("a")] if path == VIDEOS else [make_user("spammer")]
    page = run_action(root, path, action, selected).content.decode()
    assert re.findall(r"<h1[^>]*>([^<]*)</h1>", page) == [heading]
