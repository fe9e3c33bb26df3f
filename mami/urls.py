from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from chat.api import api
from chat.api_guard import api_not_found
from imagejobs.views import healthz, metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:conversation-list"), name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # No password-reset pages: mami sends no mail, so they would accept an
    # address and send nothing. Staff set passwords in the admin.
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("conversations/", include("chat.urls")),
    path("jobs/", include("imagejobs.urls")),
    path("api/", api.urls),
    path("api/<path:rest>", api_not_found),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
]

# A request that met the database away outside a view is a 503 too.
handler500 = "mami.unavailable.server_error"
