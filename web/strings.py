"""The words the pages' scripts show, translated on the server (Django's i18n, the
`django` catalog in web/locale/) and handed to the scripts as JSON. Placeholders are
`%(name)s`; the scripts fill them with textContent, never HTML."""

from django.utils.translation import gettext as _


def page_strings() -> dict[str, str]:
    return {
        # The feed's mode (client kit: connecting, live, reconnecting, polling, stopped).
        "mode_connecting": _("Connecting…"),
        "mode_live": _("Live"),
        "mode_reconnecting": _("Reconnecting…"),
        "mode_polling": _("Live updates unavailable: checking every %(seconds)s s"),
        "mode_stopped": _("Disconnected: reload the page"),
        # A content's card.
        "status_idle": _("Waiting"),
        "status_generating": _("Generating"),
        "status_complete": _("Complete"),
        "status_error": _("Failed"),
        "stage_uploading": _("Fetching the content"),
        "stage_summarizing": _("Writing the summary"),
        "stage_qa_generating": _("Writing questions and answers"),
        "waiting_note": _("Waiting for the AI to start."),
        "generating_note": _("This content is still being generated."),
        "eta": _("Expected %(when)s"),
        "eta_soon": _("Almost done"),
        "eta_late": _("Taking longer than usual"),
        "summary": _("Summary"),
        "qa": _("Questions and answers"),
        "retry": _("Retry"),
        "untitled": _("Untitled"),
        "text_content": _("Text"),
        "submit_failed": _("Could not submit: %(detail)s"),
        "retry_failed": _("Could not retry: %(detail)s"),
        "empty_channel": _("Nothing here yet: submit a link or a text above."),
        # The studio.
        "job_queued": _("Queued"),
        "job_processing": _("Processing"),
        "job_completed": _("Done"),
        "job_failed": _("Failed"),
        "job_cancelled": _("Cancelled"),
        "kind_glitch": _("Glitch"),
        "kind_remix": _("Remix"),
        "queue_position": _("Number %(position)s in the queue"),
        "cancel": _("Cancel"),
        "credits": _("%(balance)s credits"),
        "cost": _("%(cost)s credits"),
        "upload_failed": _("Could not upload: %(detail)s"),
        "job_failed_to_start": _("Could not start the job: %(detail)s"),
        "uploading": _("Uploading…"),
        "no_videos": _("No videos yet: upload one above."),
        "no_jobs": _("No jobs yet: glitch or remix a video."),
        "video_of": _("of “%(title)s”"),
        # The bell.
        "notification_like": _("“%(title)s” was liked"),
        "notification_likes": _("“%(title)s” got %(count)s likes"),
        "notification_comment": _("New comment: “%(text)s”"),
        "notification_remix": _("Your video was remixed: “%(title)s”"),
        "notification_ai_job_completed": _("Your %(kind)s job is done"),
        "notification_ai_job_failed": _("Your %(kind)s job failed: %(error)s"),
        "notification_content_complete": _("“%(title)s” is ready"),
        "notification_content_error": _("“%(title)s” failed: %(error)s"),
        "notification_other": _("Something happened"),
        "no_notifications": _("No notifications."),
        "unread": _("%(count)s unread"),
    }
