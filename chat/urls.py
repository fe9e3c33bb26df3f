from django.urls import path

from . import views

app_name = "chat"

urlpatterns = [
    path("", views.conversation_list, name="conversation-list"),
    path("new/", views.conversation_start, name="conversation-start"),
    path("<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("<uuid:conversation_id>/messages/", views.message_create, name="message-create"),
    path("<uuid:conversation_id>/older/", views.conversation_older, name="conversation-older"),
    path("<uuid:conversation_id>/rename/", views.conversation_rename, name="conversation-rename"),
    path("<uuid:conversation_id>/delete/", views.conversation_delete, name="conversation-delete"),
    path("gallery/", views.gallery, name="gallery"),
    path(
        "<uuid:conversation_id>/cancel-waiting/",
        views.conversation_cancel_all,
        name="conversation-cancel-all",
    ),
    path("jobs/<uuid:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("replies/<uuid:message_id>/stop/", views.reply_stop, name="reply-stop"),
    path("replies/<uuid:message_id>/retry/", views.reply_retry, name="reply-retry"),
    path("jobs/<uuid:job_id>/retry/", views.job_again, {"regenerate": False}, name="job-retry"),
    path(
        "jobs/<uuid:job_id>/regenerate/",
        views.job_again,
        {"regenerate": True},
        name="job-regenerate",
    ),
    path("jobs/<uuid:job_id>/same-seed/", views.job_same_seed, name="job-same-seed"),
    path("jobs/<uuid:job_id>/variations/", views.job_variations, name="job-variations"),
]
