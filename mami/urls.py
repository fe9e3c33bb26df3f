from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from chat.api import api
from imagejobs.views import healthz, metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:conversation-list"), name="home"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("conversations/", include("chat.urls")),
    path("jobs/", include("imagejobs.urls")),
    path("api/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
]
